"""VDIs as files in one directory, crash-safe: the mechanics of file-based drivers.

Layout of one SR directory:
    .srkit-sr     marks the directory as an SR (holds the SR uuid)
    <uuid>.raw    the VDI's bytes, a sparse file named by the VDI uuid
    its record    the framework metadata; its presence is what makes the VDI exist
                  (the commit point). Where it lives is the driver's choice
                  (``framework.files.meta``): ``<uuid>.json`` written whole and renamed
                  into place (``local``), or the ``user.srkit.meta`` xattr of the
                  ``.raw`` itself (``gluster``)
    anything else of ours (``<uuid>.json.tmp``, ``<uuid>.raw.revert``, ``.probe-*``,
    a ``.raw`` without its record) is scratch that a killed command left behind

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

from framework import crash
from framework.driver import Volume
from framework.errors import SRError
from framework.files.meta import META, TMP, SidecarMeta, fsync_dir as _fsync_dir

MARKER = '.srkit-sr'
RAW = '.raw'
REVERT = '.revert'
PROBE = '.probe-'
SCRATCH = (META + TMP, RAW + REVERT)   # <uuid>.json.tmp, <uuid>.raw.revert
OURS = (RAW, META) + SCRATCH


def _sparse_copy(src, fd, dst):
    # imported here: only copies and extents need it, not the common commands
    from framework import sparse
    return sparse.clone_into(src, fd)


def _unlink(path):
    try:
        os.unlink(path)
        return True
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
        return False


class FileStore(object):
    """The VDI files of one SR directory. ``owner`` prefixes crash-point names
    (the SR type, e.g. 'local'); ``keep_prefixes`` starts the names of the driver's
    own per-VDI files (leases), removed with the SR; ``meta``
    is where records live (``framework.files.meta``; default: sidecar ``.json``);
    ``copier(src_path, fd, dst_path)`` fills a new file with a copy of another and
    returns how (default ``framework.sparse.clone_into``: reflink, copy_file_range,
    or a sparse read/write copy)."""

    def __init__(self, root, owner, log, meta=None, keep_prefixes=(), copier=None):
        self.root = root
        self.owner = owner
        self.log = log
        self.keep_prefixes = tuple(keep_prefixes)
        self.meta = meta or SidecarMeta()
        self.copier = copier or _sparse_copy

    def _point(self, command, step):
        crash.point('%s.%s.%s' % (self.owner, command, step))

    def raw(self, uuid):
        return os.path.join(self.root, uuid + RAW)

    # --- the SR directory ------------------------------------------------------------
    def exists(self):
        return os.path.exists(os.path.join(self.root, MARKER))

    def check(self, hint='is the filesystem mounted?'):
        if not self.exists():
            raise SRError('SRUnavailable', 'no SR at %s (%s)' % (self.root, hint))

    def make(self, sr_uuid):
        """Mark a new SR directory; the marker's rename is the commit point."""
        if self.exists():
            raise SRError('SRExists', self.root)
        if not os.path.isdir(self.root):  # a killed sr_create may have made it
            os.mkdir(self.root)
        marker = os.path.join(self.root, MARKER)
        with open(marker + TMP, 'w') as f:
            f.write(sr_uuid + '\n')
        os.rename(marker + TMP, marker)

    def remove(self):
        """Remove an SR that holds no VDI. SRNotEmpty (39) while a live command holds a
        file, or while the directory holds something that is not ours: keep the SR."""
        self.check()
        self.collect_garbage(grace=0)
        names = os.listdir(self.root)
        left = sorted(n for n in names if not n.startswith(MARKER) and
                      not (self.keep_prefixes and n.startswith(self.keep_prefixes)))
        if left:
            raise SRError('SRNotEmpty', '%s still holds %s' % (self.root, ', '.join(left)))
        for name in names:
            if self.keep_prefixes and name.startswith(self.keep_prefixes):
                _unlink(os.path.join(self.root, name))
        _unlink(os.path.join(self.root, MARKER + TMP))  # a killed sr_create's
        os.unlink(os.path.join(self.root, MARKER))
        os.rmdir(self.root)

    def allocated(self):
        """Bytes the SR's files hold on the filesystem."""
        total = 0
        for name in os.listdir(self.root):
            try:
                total += os.lstat(os.path.join(self.root, name)).st_blocks * 512
            except OSError:
                pass
        return total

    # --- reading -------------------------------------------------------------------
    def volume(self, uuid):
        """The complete VDI ``uuid``, or None (absent, or a killed command's leftovers)."""
        try:
            meta = self.meta.read(self, uuid)
            st = os.stat(self.raw(uuid)) if meta is not None else None
        except (IOError, OSError, ValueError):
            return None
        if not isinstance(meta, dict) or st is None:
            return None
        return Volume(uuid, st.st_size, st.st_blocks * 512, meta,
                      read_only=meta.get('read_only') == 'true')

    def volumes(self):
        found = {}
        for name in os.listdir(self.root):
            uuid = self.meta.candidate(name)
            if uuid:
                volume = self.volume(uuid)
                if volume is not None:
                    found[volume.uuid] = volume
        return found

    def extents(self, uuid):
        from framework import sparse
        fd = os.open(self.raw(uuid), os.O_RDONLY)
        try:
            return sparse.data_extents(fd)
        finally:
            os.close(fd)

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
        for path in (self.raw(uuid),) + self.meta.paths(self, uuid):
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
        self.meta.remove(self, uuid)
        self._point('destroy', 'after-meta')
        _unlink(self.raw(uuid))
        for leftover in self.meta.scratch_paths(self, uuid) + (self.raw(uuid) + REVERT,):
            _unlink(leftover)

    def set_meta(self, uuid, meta, command='set_meta'):
        if not os.path.exists(self.raw(uuid)):
            raise SRError('VDIMissing', 'no VDI %s' % uuid)
        self._write_meta(uuid, meta, command)

    def _write_meta(self, uuid, meta, command):
        self.meta.write(self, uuid, meta, command)
        self._point(command, 'after-meta')

    def copy(self, uuid, new_uuid, meta, command):
        """A new VDI ``new_uuid`` with the bytes of ``uuid``; return (Volume, how)."""
        if self.volume(uuid) is None:
            raise SRError('VDIMissing', 'no VDI %s' % uuid)
        self._claim(new_uuid)
        fd = self._new_file(self.raw(new_uuid), command)
        try:
            how = self.copier(self.raw(uuid), fd, self.raw(new_uuid))
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
            how = self.copier(self.raw(snapshot_uuid), fd, scratch)
            self._point('revert', 'after-copy')
            # a record kept on the file itself must be on the new bytes before they swap in
            self.meta.carry(self, self.volume(uuid).meta, scratch)
            self._point('revert', 'after-carry')
            os.rename(scratch, self.raw(uuid))
            _fsync_dir(self.root)
            self._point('revert', 'after-rename')
        finally:
            os.close(fd)
        return how

    def resize(self, uuid, size):
        if self.volume(uuid) is None:
            raise SRError('VDIMissing', 'no VDI %s' % uuid)
        self.check_size(size)
        os.truncate(self.raw(uuid), size)  # one step: the old size or the new one
        self._point('resize', 'after-truncate')
        return size

    # --- garbage -----------------------------------------------------------------------
    def scratch(self):
        """Names of ours in the directory that belong to no complete VDI. Files we
        never make (an admin's notes, lost+found) are not ours to remove."""
        complete = set(self.volumes())
        names = []
        for name in os.listdir(self.root):
            base, dot, suffix = name.partition('.')
            if name.startswith(PROBE):
                names.append(name)
            elif base and '.' + suffix in OURS and base not in complete \
                    or '.' + suffix in SCRATCH:
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
