"""The reference driver: VDIs as sparse raw files in a directory.

Layout under device-config ``location`` (an absolute, normalised path):
    <location>/<sr_uuid>/.srkit-sr          marks the directory as an SR
    <location>/<sr_uuid>/<vdi_uuid>.raw     the VDI, a sparse file
    <location>/<sr_uuid>/<vdi_uuid>.json    its framework metadata (sidecar)

The files and the crash-safe order of every change to them live in
``framework.files.store`` (shared with other file-based drivers); this module adds
the SR directory and the datapath. Snapshots and clones are reflinks where the
filesystem can (XFS, Btrfs) and sparse copies elsewhere: each VDI stays an
independent file, so deleting one never affects another. A VDI is attached as a
loop device. See docs/crash-consistency.md for each command's steps.
"""

import os

from framework.files import loop
from framework.files.store import FileStore, MARKER
from framework.driver import Driver
from framework.errors import SRError
from framework.options import Option, PATH


class LocalDriver(Driver):
    name = 'Local'
    description = 'srkit reference driver: VDIs are sparse raw files in a local directory'
    options = (
        Option('location', 'absolute path of the directory that holds the SR '
               '(one sub-directory per SR)', required=True, kind=PATH),
    )
    thin_provisioning = True
    resize_online = True
    max_vdi_size = 16 * 1024 ** 4

    # --- paths -------------------------------------------------------------------------
    @property
    def root(self):
        return os.path.join(self.config['location'], self.sr_uuid)

    @property
    def files(self):
        return FileStore(self.root, 'local', self.ctx.log)

    def _raw(self, uuid):
        return self.files.raw(uuid)

    def _check_sr(self):
        self.files.check()

    # --- SR ------------------------------------------------------------------------
    def sr_create(self, physical_size):
        if not os.path.isdir(self.config['location']):
            raise SRError('SRUnavailable', 'location %s is not a directory'
                          % self.config['location'])
        self.files.make(self.sr_uuid)

    def sr_delete(self):
        self.files.remove()

    def sr_attach(self):
        self._check_sr()

    def sr_stats(self):
        st = os.statvfs(self.config['location'])
        total = st.f_blocks * st.f_frsize
        return total, total - st.f_bavail * st.f_frsize

    def probe(self):
        location = self.config['location']
        if not os.path.isdir(location):
            raise SRError('SRUnavailable', 'location %s is not a directory' % location)
        return [{'uuid': name} for name in sorted(os.listdir(location))
                if os.path.exists(os.path.join(location, name, MARKER))]

    # --- volumes -------------------------------------------------------------------
    def list(self):
        self._check_sr()
        return self.files.volumes()

    def get(self, uuid):
        return self.files.volume(uuid)

    def collect_garbage(self):
        self._check_sr()
        self.files.collect_garbage()

    def create(self, uuid, size, meta):
        self._check_sr()
        return self.files.create(uuid, size, meta)

    def destroy(self, uuid):
        self.files.destroy(uuid)

    def set_meta(self, uuid, meta):
        self.files.set_meta(uuid, meta)

    def _copy(self, uuid, new_uuid, meta, command):
        volume, how = self.files.copy(uuid, new_uuid, meta, command)
        self.ctx.log.info('copied %s to %s by %s' % (uuid, new_uuid, how))
        return volume

    def snapshot(self, uuid, new_uuid, meta):
        return self._copy(uuid, new_uuid, meta, 'snapshot')

    def clone(self, uuid, new_uuid, meta):
        return self._copy(uuid, new_uuid, meta, 'clone')

    def revert(self, uuid, snapshot_uuid):
        self.files.revert(uuid, snapshot_uuid)

    def resize(self, uuid, size):
        self.files.resize(uuid, size)
        loop.refresh_capacity(self._raw(uuid))
        return size

    def extents(self, uuid):
        return self.files.extents(uuid)

    # --- datapath ------------------------------------------------------------------
    def attach(self, uuid, writable):
        return loop.attach(self._raw(uuid), writable)

    def detach(self, uuid):
        loop.detach(self._raw(uuid))
