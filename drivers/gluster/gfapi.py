"""Server-side copies through libgfapi's glfs_copy_file_range.

Measured on Gluster 10.3 (docs/gluster.md): copy_file_range(2) on the FUSE mount
is no server-side copy, the kernel splices the bytes through the FUSE client (read
from the bricks, written back to every brick). ``glfs_copy_file_range`` asks the
bricks themselves: each brick runs copy_file_range on its own filesystem, which on
XFS with reflink (or Btrfs) shares the extents instead of copying them and
elsewhere copies inside the server, never through this host.

Gluster 10.3 bugs this works around (measured, docs/gluster.md): the source offset
is ignored (every call reads from offset 0), so the file is copied by one call over
its whole length and anything short of that falls back; on a replicated volume the
copy came out full of zeros, so only files that live on one single brick are copied
this way (Gluster's virtual xattr ``trusted.glusterfs.pathinfo`` on the mount says
where a file lives). One whole-length call also copies holes, which only a reflink
keeps as holes: hence opt-in, ``server_copy=reflink``, for bricks on XFS with
reflink or Btrfs.

libgfapi (``libgfapi.so.0``: glusterfs-api / libgfapi0) is optional: without it,
``copier`` returns None and the store copies through the mount. ctypes only, loaded
on first use; the GFAPI_6.0 ABI (Gluster >= 6).
"""

import ctypes
import os

from framework import sparse

STAT_BUF = 512    # >= sizeof(struct glfs_stat); the library fills it
_lib = None


def _load():
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL('libgfapi.so.0', use_errno=True)
        except OSError:
            _lib = False
            return None
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        lib.glfs_new.restype, lib.glfs_new.argtypes = vp, [cp]
        lib.glfs_set_volfile_server.argtypes = [vp, cp, cp, ctypes.c_int]
        lib.glfs_set_logging.argtypes = [vp, cp, ctypes.c_int]
        lib.glfs_init.argtypes = [vp]
        lib.glfs_open.restype, lib.glfs_open.argtypes = vp, [vp, cp, ctypes.c_int]
        lib.glfs_copy_file_range.restype = ctypes.c_ssize_t
        lib.glfs_copy_file_range.argtypes = [
            vp, ctypes.POINTER(ctypes.c_longlong), vp, ctypes.POINTER(ctypes.c_longlong),
            ctypes.c_size_t, ctypes.c_uint, vp, vp, vp]
        lib.glfs_fsync.argtypes = [vp, vp, vp]
        lib.glfs_close.argtypes = [vp]
        _lib = lib
    return _lib or None


class Volume(object):
    """One libgfapi connection to a volume, for the copies of one command."""

    def __init__(self, lib, servers, volume, log_file):
        self.lib = lib
        self.fs = lib.glfs_new(volume.encode())
        if not self.fs:
            raise OSError(ctypes.get_errno(), 'glfs_new failed')
        for host in servers:
            lib.glfs_set_volfile_server(self.fs, b'tcp', host.strip('[]').encode(), 24007)
        lib.glfs_set_logging(self.fs, (log_file or '/dev/null').encode(), 3)
        if lib.glfs_init(self.fs) != 0:
            err = ctypes.get_errno()
            self.fs = None
            raise OSError(err, 'glfs_init: %s' % os.strerror(err))

    def _open(self, path, flags):
        fd = self.lib.glfs_open(self.fs, path.encode(), flags)
        if not fd:
            err = ctypes.get_errno()
            raise OSError(err, 'glfs_open %s: %s' % (path, os.strerror(err)))
        return fd

    def _fsync(self, fd):
        if self.lib.glfs_fsync(fd, None, None) != 0:
            err = ctypes.get_errno()
            raise OSError(err, 'glfs_fsync: %s' % os.strerror(err))

    def copy(self, src, dst, size):
        """Copy volume path ``src`` into the existing, empty volume path ``dst``; return
        the bytes copied (short of ``size``: the caller must not trust the copy)."""
        fin = self._open(src, os.O_RDONLY)
        try:
            # a lazily opened fd reaches the brick as an anonymous one, which the brick's
            # copy_file_range refuses (EINVAL there, EPERM here): O_TRUNC and an fsync
            # make the open real (the file is new and empty anyway)
            fout = self._open(dst, os.O_RDWR | os.O_TRUNC)
            try:
                self._fsync(fout)
                bufs = [ctypes.create_string_buffer(STAT_BUF) for _ in range(3)]
                off_in, off_out = ctypes.c_longlong(0), ctypes.c_longlong(0)
                done = self.lib.glfs_copy_file_range(
                    fin, ctypes.byref(off_in), fout, ctypes.byref(off_out), size, 0,
                    bufs[0], bufs[1], bufs[2])
                if done < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, 'glfs_copy_file_range: %s' % os.strerror(err))
                self._fsync(fout)
                return done
            finally:
                self.lib.glfs_close(fout)
        finally:
            self.lib.glfs_close(fin)

    def close(self):
        """Leave the connection to process exit: glfs_fini takes 10 s on Gluster 10.3
        (measured) and a driver process ends right after its one command; every
        copy was fsynced on the bricks before this."""
        self.fs = None


PATHINFO = 'trusted.glusterfs.pathinfo'


def single_brick(path):
    """The one brick (host:path prefix) holding ``path``, or None (replicated, unknown)."""
    try:
        info = os.getxattr(path, PATHINFO).decode('utf-8', 'replace').strip('\0 ')
    except OSError:
        return None
    if info.count('<POSIX(') != 1 or info.startswith('(<'):
        return None
    return info[info.index('<POSIX('):].split(')', 1)[0]


def copier(servers, volume, mountpoint, log, log_file=None):
    """A ``FileStore`` copier doing server-side copies, or None without libgfapi."""
    lib = _load()
    if lib is None:
        return None

    def copy(src_path, fd, dst_path):
        """Copy the file ``src_path`` (on the mount) into the new, empty ``dst_path`` (``fd``)."""
        brick = single_brick(src_path)
        if brick is None or single_brick(dst_path) != brick:
            return sparse.clone_into(src_path, fd)
        with open(src_path, 'rb') as fin:
            os.fsync(fin.fileno())   # what this host wrote must be on the bricks first
            size = os.fstat(fin.fileno()).st_size
        if size == 0:
            return sparse.clone_into(src_path, fd)
        try:
            vol = Volume(lib, servers, volume, log_file)
        except OSError as e:
            log.error('libgfapi unusable (%s): copying through the mount' % e)
            return sparse.clone_into(src_path, fd)
        try:
            done = vol.copy('/' + os.path.relpath(src_path, mountpoint),
                            '/' + os.path.relpath(dst_path, mountpoint), size)
        except OSError as e:
            log.error('server-side copy failed (%s): copying through the mount' % e)
            done = -1
        finally:
            vol.close()
        if done != size:
            os.ftruncate(fd, 0)
            return sparse.clone_into(src_path, fd)
        os.ftruncate(fd, size)
        os.fsync(fd)
        return 'server-copy'
    return copy
