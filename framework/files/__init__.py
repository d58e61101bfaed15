"""Building blocks of drivers whose VDIs are files or file-backed block devices.

``store.FileStore``: VDIs as files in an SR directory, the crash-safe order of every
mutating primitive, garbage collection (``local``, ``gluster``); ``meta``: where a
VDI's record lives (sidecar ``.json`` or a user xattr); ``loop``: the loop-device
datapath of those files; ``fusedev``: a volume shown as a file by a FUSE daemon and
made a block device by a loop device (``rbd``'s and ``s3``'s FUSE datapaths).
"""
