"""VDI export and import: one pipeline on top of the driver primitives.

- ``pipeline``: reads a VDI through its attached device (only the ``extents`` /
  ``changed_extents`` the driver reports) into a format writer, and writes a
  format reader's output into a VDI; the VDI lock is held throughout.
- ``raw``, ``vhd``, ``qcow2``: one streaming writer and reader per image format.
- ``compress``: zstd through python-zstandard (multi-threaded), else the zstd CLI.
- ``container``: srkit's metadata (header, digest trailer) in zstd skippable
  frames that ``zstd -d`` and qemu-img never see.
- ``runner``: the process entry point (``python3 -m framework.export``) that the
  simulator's ``srkit xe``, the host's ``srkit vdi-export`` and the xapi plugin run.
"""
