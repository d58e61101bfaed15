"""zd device nodes: which zvol a node serves, and waiting for ZFS and udev to catch up.

ZFS creates, renames and removes zd nodes asynchronously, from one zvol task queue per pool
(first in, first out), and udev moves the /dev/zvol links later still. Until both are done,
/dev/zvol/<name> can point at a node that serves another zvol: one another zvol reused, or
the node of a zvol destroyed or renamed away under this very name, which still answers to
that name. Nodes themselves come from devtmpfs, without udev."""
import fcntl
import os
import struct
import time

# _IOR(0x12, 125, char[256]): the ioctl by which a zd node names its zvol
BLKZNAME = (2 << 30) | (256 << 16) | (0x12 << 8) | 125
BLKGETSIZE64 = (2 << 30) | (8 << 16) | (0x12 << 8) | 114


def identify(path):
    """(zvol name or None when the kernel cannot say, size) of the node at path, or None."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        length = bytearray(8)
        fcntl.ioctl(fd, BLKGETSIZE64, length)
        size = struct.unpack('=Q', bytes(length))[0]
        buf = bytearray(256)
        try:
            fcntl.ioctl(fd, BLKZNAME, buf)
        except OSError:
            return None, size
        return bytes(buf).split(b'\0', 1)[0].decode('utf-8', 'replace'), size
    except OSError:
        return None
    finally:
        os.close(fd)


def serves(path, name, size):
    """Whether the node at path is zvol `name` of `size` bytes. A stale node of a zvol that
    had this name mostly differs in size; a kernel without BLKZNAME leaves only the size."""
    found = identify(path)
    return found is not None and found[1] == size and found[0] in (name, None)


def nodes(sys_block='/sys/block'):
    """The zvol names the zd nodes currently answer to."""
    try:
        disks = [d for d in os.listdir(sys_block) if d.startswith('zd')]
    except OSError:
        return set()
    return set((identify('/dev/' + d) or (None,))[0] for d in disks) - set([None])


def wait_renamed(renamed, gone, timeout):
    """Wait until a node answers to `renamed` and none to `gone`. The queue is first in,
    first out: call it with the name the first of a series of changes gives a node and the
    name the last one takes away, and every change in between is done. False on timeout."""
    deadline = time.time() + timeout
    while True:
        names = nodes()
        if renamed in names and gone not in names:
            return True
        if time.time() > deadline:
            return False
        time.sleep(0.05)
