"""One SR = one directory of sparse raw files; every mutation in a crash-safe order.

Layout under the SR directory ``root``:
    .srkit-sr              marks the directory as an SR (holds the SR uuid)
    <vdi_uuid>.raw         a VDI: a sparse file, named by the uuid the framework chose
    .<vdi_uuid>.<step>     a file being built (``new``) or swapped in (``revert``)

A volume only becomes visible by an atomic rename of a complete file that already
carries its metadata, so a process killed at any step leaves either the old state
or the new one, plus at most a hidden staging file. ``collect`` (run by the SR
master at scan) removes staging files older than a grace period: never one that a
command still running on another host is building.

Crash points are named ``<owner>.<command>.<step>``, the owner being the SR type.
"""

import os
import time

from framework import crash
from framework import sparse
from framework.driver import Volume
from framework.errors import SRError

MARKER = '.srkit-sr'
SUFFIX = '.raw'
GRACE = 3600.0   # seconds a staging file is left alone (a copy of a big VDI takes a while)


class FileStore(object):
    def __init__(self, root, owner, meta_store, log, grace=GRACE):
        self.root = root
        self.owner = owner
        self.meta = meta_store
        self.log = log
        self.grace = grace

    # --- names -------------------------------------------------------------------------
    def path(self, uuid):
        return os.path.join(self.root, uuid + SUFFIX)

    def staging(self, uuid, step):
        return os.path.join(self.root, '.%s.%s' % (uuid, step))

    def _point(self, command, step):
        crash.point('%s.%s.%s' % (self.owner, command, step))

    # --- the SR directory ------------------------------------------------------------
    def exists(self):
        return os.path.exists(os.path.join(self.root, MARKER))

    def check(self, hint='is the filesystem mounted?'):
        if not self.exists():
            raise SRError('SRUnavailable', 'no SR at %s (%s)' % (self.root, hint))

    def make(self, sr_uuid):
        if self.exists():
            raise SRError('SRExists', self.root)
        if not os.path.isdir(self.root):
            os.mkdir(self.root)
        self._point('sr_create', 'after-mkdir')
        tmp = os.path.join(self.root, MARKER + '.tmp')
        with open(tmp, 'w') as f:
            f.write(sr_uuid + '\n')
        os.rename(tmp, os.path.join(self.root, MARKER))

    def remove(self):
        """Remove an SR that holds no VDI (staging files and strays go with it)."""
        self.check()
        os.unlink(os.path.join(self.root, MARKER))
        self._point('sr_delete', 'after-unmark')
        for name in os.listdir(self.root):
            if name.startswith('.') or self.meta.owned(name):
                os.unlink(os.path.join(self.root, name))
        os.rmdir(self.root)

    def allocated(self):
        """Bytes the SR's files hold on the filesystem."""
        total = 0
        for name in os.listdir(self.root):
            try:
                total += os.stat(os.path.join(self.root, name)).st_blocks * 512
            except OSError:
                pass
        return total

    # --- reading -----------------------------------------------------------------------
    def volume(self, uuid):
        path = self.path(uuid)
        try:
            st = os.stat(path)
        except OSError:
            return None
        meta = self.meta.read(path)
        if meta is None:
            return None
        return Volume(uuid, st.st_size, st.st_blocks * 512, meta,
                      read_only=meta.get('read_only') == 'true')

    def list(self):
        self.check()
        found = {}
        for name in os.listdir(self.root):
            if name.endswith(SUFFIX) and not name.startswith('.'):
                volume = self.volume(name[:-len(SUFFIX)])
                if volume is not None:
                    found[volume.uuid] = volume
        return found

    def collect(self):
        """Remove staging files left by killed commands, past the grace period."""
        now = time.time()
        for name in os.listdir(self.root):
            if not name.startswith('.') or name.startswith(MARKER) or \
                    name.rsplit('.', 1)[-1] not in ('new', 'revert'):
                continue
            path = os.path.join(self.root, name)
            try:
                if now - os.stat(path).st_mtime > self.grace:
                    os.unlink(path)
                    self.log.info('collected %s, left by an interrupted command' % name)
            except OSError:
                pass

    def need(self, uuid):
        volume = self.volume(uuid)
        if volume is None:
            raise SRError('VDIMissing', 'no VDI %s in %s' % (uuid, self.root))
        return volume

    # --- mutations ---------------------------------------------------------------------
    def _publish(self, staging, uuid, command):
        """The one step that makes a built file a VDI."""
        if os.path.exists(self.path(uuid)):
            os.unlink(staging)
            raise SRError('VDIExists', 'a VDI %s already exists in %s' % (uuid, self.root))
        os.rename(staging, self.path(uuid))
        self._point(command, 'after-publish')

    def create(self, uuid, size, meta):
        self.check()
        staging = self.staging(uuid, 'new')
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self._point('create', 'after-file')
        self.meta.stage(staging, self.path(uuid), meta)
        self._point('create', 'after-meta')
        self._publish(staging, uuid, 'create')
        return self.volume(uuid)

    def destroy(self, uuid):
        path = self.path(uuid)
        try:
            os.unlink(path)
        except OSError:
            pass
        self._point('destroy', 'after-unlink')
        self.meta.remove(path)

    def set_meta(self, uuid, meta):
        self.need(uuid)
        self.meta.write(self.path(uuid), meta)
        self._point('set_meta', 'after-write')

    def copy(self, uuid, new_uuid, meta, command):
        """Snapshot or clone: an independent copy; returns (Volume, how it was copied)."""
        self.need(uuid)
        staging = self.staging(new_uuid, 'new')
        if os.path.exists(staging):
            os.unlink(staging)
        how = sparse.clone_file(self.path(uuid), staging)
        os.chmod(staging, 0o600)
        self._point(command, 'after-copy')
        self.meta.stage(staging, self.path(new_uuid), meta)
        self._point(command, 'after-meta')
        self._publish(staging, new_uuid, command)
        return self.volume(new_uuid), how

    def revert(self, uuid, snapshot_uuid):
        """Replace the data of ``uuid`` by a copy of ``snapshot_uuid``, keeping its metadata."""
        current = self.need(uuid)
        self.need(snapshot_uuid)
        staging = self.staging(uuid, 'revert')
        if os.path.exists(staging):
            os.unlink(staging)
        how = sparse.clone_file(self.path(snapshot_uuid), staging)
        os.chmod(staging, 0o600)
        self._point('revert', 'after-copy')
        self.meta.stage(staging, self.path(uuid), current.meta)
        self._point('revert', 'after-meta')
        os.rename(staging, self.path(uuid))
        self._point('revert', 'after-publish')
        return how

    def resize(self, uuid, size):
        current = self.need(uuid)
        if size < current.virtual_size:
            raise SRError('VDISize', 'shrinking VDI %s would lose data' % uuid)
        os.truncate(self.path(uuid), size)
        self._point('resize', 'after-truncate')
        return size

    def extents(self, uuid):
        fd = os.open(self.path(uuid), os.O_RDONLY)
        try:
            return sparse.data_extents(fd)
        finally:
            os.close(fd)
