"""Per-SR and per-VDI fcntl locks under /var/lock/sm/<uuid>/, as sm lays them out.

The paths match sm's (``<sr_uuid>/sr``, ``<vdi_uuid>/vdi``) so that sm's own
tools and ours exclude each other on a host. SRKIT_LOCK_DIR moves the root for
tests. A lock that stays busy past ``timeout`` gives LockErr (37): xapi never
times out a driver, so a driver must not wait forever.
"""

import errno
import fcntl
import os
import time

from framework.errors import SRError

DEFAULT_ROOT = '/var/lock/sm'
TIMEOUT = 120.0


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
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except (IOError, OSError) as e:
                if e.errno not in (errno.EACCES, errno.EAGAIN):
                    raise
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


def sr_lock(sr_uuid):
    return Lock(sr_uuid, 'sr')


def vdi_lock(vdi_uuid):
    return Lock(vdi_uuid, 'vdi')
