"""VDIs as sparse raw files in one directory per SR, on any mounted filesystem.

Shared by the file-backed drivers (``gluster``; ``local`` is to move onto it):
``store.FileStore`` owns the directory layout, the crash-safe step order of every
mutating primitive and orphan collection; ``meta`` stores the framework metadata
(user xattrs or a sidecar file); ``loop`` is the loop-device datapath.
"""
