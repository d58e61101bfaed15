"""VDIs as files in one directory, crash-safe: the mechanics of file-based drivers.

Layout of one SR directory (the driver owns the directory and its marker):
    <uuid>.raw    the VDI's bytes, a sparse file named by the VDI uuid
    <uuid>.json   its framework metadata, written whole and renamed into place;
                  its presence is what makes the VDI exist (the commit point)
    anything else of ours (``<uuid>.json.tmp``, ``<uuid>.raw.revert``, ``.probe-*``,
    a ``.raw`` without ``.json``) is scratch that a killed command left behind

Every mutating step is ordered so that a process killed anywhere leaves either
the old state or the new one plus scratch: ``volumes()`` only reports complete
VDIs, and ``collect_garbage()`` (sr_scan on the master) removes scratch. While a
command fills a file it holds ``flock`` on it, and scratch younger than
``crash.grace()`` is left alone: neither a live command on this host nor one on
another host mounting the same directory loses what it is building.
"""

import errno
import fcntl
import os
import time

from framework import crash, sparse
from framework.driver import Volume
from framework.errors import SRError

RAW = '.raw'
META = '.json'
TMP = '.tmp'
REVERT = '.revert'
PROBE = '.probe-'


def _unlink(path):
    try:
        os.unlink(path)
        return True
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
        return False


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileStore(object):
    """The VDI files of one SR directory. ``owner`` prefixes crash-point names
    (the SR type, e.g. 'local'); ``keep`` names the driver's own files there."""

    def __init__(self, root, owner, log, keep=()):
        self.root = root
        self.owner = owner
        self.log = log
        self.keep = frozenset(keep)

    def _point(self, command, step):
        crash.point('%s.%s.%s' % (self.owner, command, step))

    def raw(self, uuid):
        return os.path.join(self.root, uuid + RAW)

    def _meta_path(self, uuid):
        return os.path.join(self.root, uuid + META)

    # --- reading -------------------------------------------------------------------
    def volume(self, uuid):
        """The complete VDI ``uuid``, or None (absent, or a killed command's leftovers)."""
        import json
        try:
            with open(self._meta_path(uuid)) as f:
                meta = json.load(f)
            st = os.stat(self.raw(uuid))
        except (IOError, OSError, ValueError):
            return None
        if not isinstance(meta, dict):
            return None
        return Volume(uuid, st.st_size, st.st_blocks * 512, meta,
                      read_only=meta.get('read_only') == 'true')

    def volumes(self):
        found = {}
        for name in os.listdir(self.root):
            if name.endswith(META):
                volume = self.volume(name[:-len(META)])
                if volume is not None:
                    found[volume.uuid] = volume
        return found

    # --- sizes ---------------------------------------------------------------------
    def _probe_fd(self):
        # an unnamed file: nothing to leak even if the process dies holding it
        try:
            return os.open(self.root, os.O_TMPFILE | os.O_RDWR, 0o600)
        except (AttributeError, OSError):
            pass
        path = os.path.join(self.root, PROBE + '%d' % os.getpid())
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        _unlink(path)
        return fd

    def check_size(self, size):
        """Raise VDISize (79) unless this filesystem can hold a file of ``size`` bytes.

        Probed on a throw-away sparse file: the limit depends on the filesystem
        (ext4 with 4 KiB blocks: 16 TiB - 4 KiB; XFS, Btrfs: 8 EiB), not the driver."""
        fd = self._probe_fd()
        try:
            if _fits(fd, size):
                return
            low, high = 0, size  # low fits, high does not
            while high - low > 1:
                mid = (low + high) // 2
                if _fits(fd, mid):
                    low = mid
                else:
                    high = mid
        finally:
            os.close(fd)
        raise SRError('VDISize', 'size %d exceeds the largest file this filesystem can '
                      'hold (%d bytes)' % (size, low))

    # --- mutating primitives ---------------------------------------------------------
    def _new_file(self, path, command):
        """Create ``path`` exclusively and hold flock on it while it fills."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._point(command, 'after-open')
        return fd

    def _claim(self, uuid):
        """Free the name ``uuid`` of a dead command's leftovers, or refuse it."""
        if self.volume(uuid) is not None:
            raise SRError('VDIExists', 'a VDI %s already exists' % uuid)
        for path in (self.raw(uuid), self._meta_path(uuid)):
            if os.path.exists(path) and not self._remove_if_idle(path, 0):
                raise SRError('VDIExists', '%s is being created by another command' % path)

    def create(self, uuid, size, meta):
        self.check_size(size)
        self._claim(uuid)
        fd = self._new_file(self.raw(uuid), 'create')
        try:
            os.ftruncate(fd, size)
            self._point('create', 'after-truncate')
            self._write_meta(uuid, meta, 'create')
        finally:
            os.close(fd)
        return self.volume(uuid)

    def destroy(self, uuid):
        # metadata first: from that instant the VDI is gone, the rest is scratch
        meta_gone = _unlink(self._meta_path(uuid))
        if meta_gone:
            _fsync_dir(self.root)
        self._point('destroy', 'after-meta')
        _unlink(self.raw(uuid))
        for leftover in (self._meta_path(uuid) + TMP, self.raw(uuid) + REVERT):
            _unlink(leftover)

    def set_meta(self, uuid, meta, command='set_meta'):
        if not os.path.exists(self.raw(uuid)):
            raise SRError('VDIMissing', 'no VDI %s' % uuid)
        self._write_meta(uuid, meta, command)

    def _write_meta(self, uuid, meta, command):
        import json
        path = self._meta_path(uuid)
        fd = os.open(path + TMP, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(meta, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        self._point(command, 'after-meta-tmp')
        os.rename(path + TMP, path)
        _fsync_dir(self.root)
        self._point(command, 'after-meta')

    def copy(self, uuid, new_uuid, meta, command):
        """A new VDI ``new_uuid`` with the bytes of ``uuid``; return (Volume, how)."""
        if self.volume(uuid) is None:
            raise SRError('VDIMissing', 'no VDI %s' % uuid)
        self._claim(new_uuid)
        fd = self._new_file(self.raw(new_uuid), command)
        try:
            how = sparse.clone_into(self.raw(uuid), fd)
            self._point(command, 'after-copy')
            self._write_meta(new_uuid, meta, command)
        finally:
            os.close(fd)
        return self.volume(new_uuid), how

    def revert(self, uuid, snapshot_uuid):
        """Give ``uuid`` the bytes of ``snapshot_uuid``: a full copy renamed over it."""
        if self.volume(snapshot_uuid) is None or self.volume(uuid) is None:
            raise SRError('VDIMissing', 'no VDI %s or %s' % (uuid, snapshot_uuid))
        scratch = self.raw(uuid) + REVERT
        if os.path.exists(scratch) and not self._remove_if_idle(scratch, 0):
            raise SRError('VDIInUse', 'VDI %s is being reverted by another command' % uuid)
        fd = self._new_file(scratch, 'revert')
        try:
            sparse.clone_into(self.raw(snapshot_uuid), fd)
            self._point('revert', 'after-copy')
            os.rename(scratch, self.raw(uuid))
            _fsync_dir(self.root)
            self._point('revert', 'after-rename')
        finally:
            os.close(fd)

    def resize(self, uuid, size):
        if self.volume(uuid) is None:
            raise SRError('VDIMissing', 'no VDI %s' % uuid)
        self.check_size(size)
        os.truncate(self.raw(uuid), size)  # one step: the old size or the new one
        self._point('resize', 'after-truncate')
        return size

    # --- garbage -----------------------------------------------------------------------
    def scratch(self):
        """Names in the directory that belong to no complete VDI."""
        complete = set(self.volumes())
        names = []
        for name in os.listdir(self.root):
            if name in self.keep:
                continue
            base = name.split('.', 1)[0]
            if name in (base + RAW, base + META) and base in complete:
                continue
            if os.path.isdir(os.path.join(self.root, name)):
                continue
            names.append(name)
        return sorted(names)

    def collect_garbage(self, grace=None):
        """Remove scratch left by killed commands; return the names removed."""
        grace = crash.grace() if grace is None else grace
        removed = []
        for name in self.scratch():
            if self._remove_if_idle(os.path.join(self.root, name), grace):
                removed.append(name)
        if removed:
            _fsync_dir(self.root)
            self.log.info('gc: removed %s' % ', '.join(removed))
        return removed

    def _remove_if_idle(self, path, grace):
        """Unlink ``path`` unless a live command holds it or it is younger than ``grace``."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as e:
            return e.errno == errno.ENOENT
        try:
            if time.time() - os.fstat(fd).st_mtime < grace:
                return False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (IOError, OSError) as e:
                if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                    return False
                raise
            _unlink(path)
            return True
        finally:
            os.close(fd)


def _fits(fd, size):
    try:
        os.ftruncate(fd, size)
    except OSError as e:
        if e.errno in (errno.EFBIG, errno.EINVAL):
            return False
        raise
    return True
