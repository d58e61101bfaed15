"""Where a file-backed VDI keeps its framework metadata.

``XattrMeta`` stores the record as one ``user.srkit.meta`` extended attribute of the
VDI file itself: one setxattr replaces it atomically, it follows the file through a
rename, and a copy of the data (copy_file_range, reflink) never copies it, so a
snapshot can never inherit its parent's identity. ``SidecarMeta`` keeps a
``<uuid>.json`` next to the file for filesystems without user xattrs.
"""

import errno
import json
import os

XATTR = 'user.srkit.meta'


class XattrMeta(object):
    kind = 'xattr'

    def read(self, data_path):
        """The record, or None when the file has none (a half-built volume)."""
        try:
            raw = os.getxattr(data_path, XATTR)
        except OSError as e:
            if e.errno in (errno.ENODATA, errno.ENOENT, getattr(errno, 'ENOATTR', -1)):
                return None
            raise
        try:
            return json.loads(raw.decode('utf-8'))
        except ValueError:
            return None

    def write(self, data_path, meta):
        from framework.errors import SRError
        body = json.dumps(meta, sort_keys=True).encode('utf-8')
        try:
            os.setxattr(data_path, XATTR, body)
        except OSError as e:
            if e.errno in (errno.E2BIG, errno.ENOSPC, errno.ERANGE):
                raise SRError('VDIUnavailable', 'metadata of %d bytes does not fit in an xattr '
                              'of %s (%s): shorten the name or description'
                              % (len(body), os.path.basename(data_path), e.strerror))
            raise

    def stage(self, staging_path, final_path, meta):
        """Record the metadata of a volume still being built under ``staging_path``."""
        self.write(staging_path, meta)

    def remove(self, data_path):
        """Nothing beside the file: the record goes with it."""

    def owned(self, name):
        return False


class SidecarMeta(object):
    kind = 'sidecar'

    @staticmethod
    def _path(data_path):
        return os.path.splitext(data_path)[0] + '.json'

    def read(self, data_path):
        try:
            with open(self._path(data_path)) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return None

    def write(self, data_path, meta):
        path = self._path(data_path)
        with open(path + '.tmp', 'w') as f:
            json.dump(meta, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(path + '.tmp', path)

    def stage(self, staging_path, final_path, meta):
        # the sidecar is named after the final file: it is visible only once that exists
        self.write(final_path, meta)

    def remove(self, data_path):
        try:
            os.unlink(self._path(data_path))
        except OSError:
            pass

    def owned(self, name):
        return name.endswith('.json') or name.endswith('.json.tmp')
