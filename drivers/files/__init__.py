"""Mechanics shared by file-based drivers (local, Gluster): VDIs as files in a directory.

``store.FileStore``: the SR directory, the crash-safe order of every mutating
primitive, garbage collection; ``meta``: where a VDI's record lives (sidecar
``.json`` or a user xattr); ``loop``: the loop-device datapath.
"""
