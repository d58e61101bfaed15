"""VDI export and import: one pipeline on top of the driver primitives.

- ``pipeline``: reads a VDI through its attached device (only the ``extents`` /
  ``changed_extents`` the driver reports) into a format writer, and writes a
  format reader's output into a VDI; the VDI lock is held throughout.
- ``raw``, ``vhd``, ``qcow2``: one streaming writer and reader per image format.
- ``compress`` / ``instream``: zstd (the CLI, or python-zstandard multi-threaded)
  for the writing and the reading end; ``compress`` owns the framing (skippable
  metadata frames, ready-made frames for runs of zeros); the reading end detects
  the compression. ``device``: O_DIRECT reads and batched writes of the device.
- ``container``: srkit's metadata (header, digest trailer) in zstd skippable
  frames that ``zstd -d`` and qemu-img never see, and the content digest.
- ``host``: ``srkit vdi-export`` / ``vdi-import`` (``python3 -m framework.export``):
  finds the SR and VDI through xapi (a host's, or the simulator's for
  ``srkit xe vdi-export``), creates the VDI for an import into a new one and
  removes it on failure; the xapi plugin ``plugins/srkit`` starts it.
- ``transfer``: one export or import (a job ``host`` builds) from the request to the
  pipeline; ``progress``: tty bar and JSON status file.
"""
