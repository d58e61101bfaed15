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
- ``runner``: the process entry point (``python3 -m framework.export JOB``) that
  the simulator's ``srkit xe vdi-export`` runs; ``host``: the host's
  ``srkit vdi-export`` / ``vdi-import`` through the local xapi (the xapi plugin
  ``plugins/srkit`` starts it); ``progress``: tty bar and JSON status file.
"""
