"""Sparse files: copy them without filling holes, list where their data is.

Shared by file-based drivers (local, Gluster). A reflink (FICLONE) makes a
copy-on-write clone in O(1) where the filesystem can (XFS, Btrfs); elsewhere
the copy visits only the data extents (SEEK_DATA/SEEK_HOLE) and leaves holes,
with copy_file_range first (the filesystem copies on its own side: a network
filesystem's server, never through this host) and read/write as the fallback.
"""

import errno
import fcntl
import os

FICLONE = 0x40049409
CHUNK = 4 * 1024 * 1024
# copy_file_range(2) for Pythons before 3.8 (dom0's 3.6); glibc may predate the wrapper
SYS_COPY_FILE_RANGE = {'x86_64': 326, 'aarch64': 285}
RANGE_CHUNK = 1024 * 1024 * 1024
_NO_OFFLOAD = (errno.EXDEV, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.ENOTSUP)


def data_extents(fd, size=None):
    """[(offset, length)] of the regions of ``fd`` that may hold data."""
    if size is None:
        size = os.fstat(fd).st_size
    extents = []
    offset = 0
    while offset < size:
        try:
            start = os.lseek(fd, offset, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:  # no data after offset
                break
            raise
        end = os.lseek(fd, start, os.SEEK_HOLE)
        extents.append((start, min(end, size) - start))
        offset = end
    return extents


def clone_into(src, fd):
    """Copy ``src`` into the open, empty file ``fd``; return how: 'reflink',
    'copy-range' or 'sparse-copy'.

    For callers that must hold the destination open (and locked) while it fills."""
    with open(src, 'rb') as fin:
        try:
            fcntl.ioctl(fd, FICLONE, fin.fileno())
            return 'reflink'
        except (IOError, OSError) as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV,
                               errno.EINVAL, errno.ENOSYS):
                raise
        size = os.fstat(fin.fileno()).st_size
        how = None
        for start, length in data_extents(fin.fileno(), size):
            if how != 'sparse-copy' and _offload_range(fin.fileno(), fd, start, length):
                how = 'copy-range'
            else:
                how = 'sparse-copy'
                _copy_range(fin.fileno(), fd, start, length)
        os.ftruncate(fd, size)
        os.fsync(fd)
        return how or 'sparse-copy'


def _copy_range(fin, fout, start, length):
    zero = bytes(CHUNK)
    end = start + length
    offset = start
    while offset < end:
        block = os.pread(fin, min(CHUNK, end - offset), offset)
        if not block:
            break
        if block != zero[:len(block)]:  # keep all-zero blocks as holes
            os.pwrite(fout, block, offset)
        offset += len(block)


def _copy_file_range(fin, fout, length, offset):
    native = getattr(os, 'copy_file_range', None)   # Python 3.8+
    if native is not None:
        return native(fin, fout, length, offset, offset)
    nr = SYS_COPY_FILE_RANGE.get(os.uname()[4])
    if nr is None:
        raise OSError(errno.ENOSYS, 'copy_file_range: unknown syscall number')
    import ctypes   # only here: its import costs more than a small command's own work
    libc = ctypes.CDLL(None, use_errno=True)
    off_in, off_out = ctypes.c_longlong(offset), ctypes.c_longlong(offset)
    done = libc.syscall(nr, ctypes.c_int(fin), ctypes.byref(off_in), ctypes.c_int(fout),
                        ctypes.byref(off_out), ctypes.c_size_t(length), ctypes.c_uint(0))
    if done < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return done


def _offload_range(fin, fout, start, length):
    """Copy one extent with copy_file_range; False when the kernel cannot (nothing copied)."""
    offset, end = start, start + length
    while offset < end:
        try:
            done = _copy_file_range(fin, fout, min(RANGE_CHUNK, end - offset), offset)
        except OSError as e:
            if e.errno in _NO_OFFLOAD and offset == start:
                return False
            raise
        if done == 0:
            break
        offset += done
    return True
