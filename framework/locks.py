"""Per-SR and per-VDI fcntl locks under /var/lock/sm/<uuid>/, as sm lays them out.

The paths match sm's (``<sr_uuid>/sr``, ``<vdi_uuid>/vdi``) so that sm's own
tools and ours exclude each other on a host. SRKIT_LOCK_DIR moves the root for
tests. A lock held by one process past ``timeout`` gives LockErr (37): xapi never
times out a driver, so a driver must not wait forever behind a stuck holder. The clock
restarts each time the lock changes hands: on a busy SR (many commands queued, each
slow on a loaded host) waiting costs time, never a failure (issue 16).
"""

import errno
import fcntl
import os
import struct
import time

from framework.errors import SRError

DEFAULT_ROOT = '/var/lock/sm'
TIMEOUT = 120.0
# struct flock of Linux on 64-bit hosts (dom0): l_type, l_whence, l_start, l_len, l_pid
_FLOCK = 'hhqqixxxx'


def root():
    return os.environ.get('SRKIT_LOCK_DIR') or DEFAULT_ROOT


class Lock(object):
    def __init__(self, namespace, name, timeout=TIMEOUT):
        self.path = os.path.join(root(), namespace, name)
        self.timeout = timeout
        self.fd = None

    def __enter__(self):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.time() + self.timeout
        delay = 0.005
        holder = None
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except (IOError, OSError) as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
            now = holder_of(self.fd)
            if now != holder:   # the queue moved: only a stuck holder times us out
                holder, deadline = now, time.time() + self.timeout
            if time.time() >= deadline:
                os.close(self.fd)
                self.fd = None
                raise SRError('LockErr', 'timed out after %ds waiting for %s'
                              % (self.timeout, self.path))
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def __exit__(self, *exc):
        if self.fd is not None:
            fcntl.lockf(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
        return False


def holder_of(fd):
    """The pid holding a conflicting lock on ``fd``'s file (None: free, or unknown)."""
    try:
        probe = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
        l_type, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, probe))
    except (IOError, OSError, struct.error):
        return None
    return pid if l_type != fcntl.F_UNLCK else None


def sr_lock(sr_uuid):
    return Lock(sr_uuid, 'sr')


def vdi_lock(vdi_uuid):
    return Lock(vdi_uuid, 'vdi')
