"""Where a file-backed VDI keeps its framework record: the commit point of its existence.

``SidecarMeta``: ``<uuid>.json`` next to the file, written to ``.json.tmp``, fsynced
and renamed into place (any filesystem). ``XattrMeta``: one ``user.srkit.meta``
extended attribute of the ``.raw`` itself. One setxattr replaces it atomically, it
needs no second file (one entry less to heal on a replicated volume), and no copy
of the data (copy_file_range, reflink, ``cp``) ever carries it, so a snapshot can
never inherit its parent's identity.

Both offer the same operations to ``framework.files.store.FileStore``.
"""

import errno
import os

META = '.json'
TMP = '.tmp'
XATTR = 'user.srkit.meta'


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SidecarMeta(object):
    kind = 'sidecar'

    @staticmethod
    def _path(store, uuid):
        return os.path.join(store.root, uuid + META)

    def candidate(self, name):
        """The VDI uuid a directory entry may be the record of, or None."""
        return name[:-len(META)] if name.endswith(META) else None

    def read(self, store, uuid):
        import json
        with open(self._path(store, uuid)) as f:
            return json.load(f)

    def write(self, store, uuid, meta, command):
        import json
        path = self._path(store, uuid)
        fd = os.open(path + TMP, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as f:
            json.dump(meta, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        store._point(command, 'after-meta-tmp')
        os.rename(path + TMP, path)
        fsync_dir(store.root)

    def remove(self, store, uuid):
        try:
            os.unlink(self._path(store, uuid))
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
            return
        fsync_dir(store.root)

    def carry(self, store, meta, path):
        """Nothing to do: the record is beside the file, not on it."""

    def paths(self, store, uuid):
        return (self._path(store, uuid),)

    def scratch_paths(self, store, uuid):
        return (self._path(store, uuid) + TMP,)


class XattrMeta(object):
    kind = 'xattr'

    def candidate(self, name):
        return name[:-4] if name.endswith('.raw') and not name.startswith('.') else None

    def read(self, store, uuid):
        try:
            raw = os.getxattr(store.raw(uuid), XATTR)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOENT, getattr(errno, 'ENOATTR', errno.ENODATA)):
                return None
            raise
        import json
        return json.loads(raw.decode('utf-8'))

    def _set(self, path, meta):
        import json
        from framework.errors import SRError
        body = json.dumps(meta, sort_keys=True).encode('utf-8')
        try:
            os.setxattr(path, XATTR, body)
        except OSError as e:
            if e.errno in (errno.E2BIG, errno.ENOSPC, errno.ERANGE):
                raise SRError('VDIUnavailable', 'a record of %d bytes does not fit in an '
                              'xattr of %s (%s): shorten the name or description'
                              % (len(body), os.path.basename(path), e.strerror))
            raise

    def write(self, store, uuid, meta, command):
        self._set(store.raw(uuid), meta)

    def remove(self, store, uuid):
        try:
            os.removexattr(store.raw(uuid), XATTR)
        except OSError as e:
            if e.errno not in (errno.ENODATA, errno.ENOENT,
                               getattr(errno, 'ENOATTR', errno.ENODATA)):
                raise

    def carry(self, store, meta, path):
        self._set(path, meta)

    def paths(self, store, uuid):
        return ()

    def scratch_paths(self, store, uuid):
        return ()
