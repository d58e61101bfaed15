"""The reference driver: VDIs as sparse raw files in a directory.

Layout under device-config ``location`` (an absolute, normalised path):
    <location>/<sr_uuid>/.srkit-sr          marks the directory as an SR
    <location>/<sr_uuid>/<vdi_uuid>.raw     the VDI, a sparse file
    <location>/<sr_uuid>/<vdi_uuid>.json    its framework metadata (sidecar)

The files and the crash-safe order of every change to them live in
``drivers.files.store`` (shared with other file-based drivers); this module adds
the SR directory and the datapath. Snapshots and clones are reflinks where the
filesystem can (XFS, Btrfs) and sparse copies elsewhere: each VDI stays an
independent file, so deleting one never affects another. A VDI is attached as a
loop device. See docs/crash-consistency.md for each command's steps.
"""

import os

from drivers.files.store import FileStore
from framework import sparse
from framework.driver import Driver
from framework.errors import SRError
from framework.options import Option, PATH

MARKER = '.srkit-sr'


def _losetup(*args):
    import subprocess
    proc = subprocess.Popen(('losetup',) + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SRError('VDIUnavailable', 'losetup %s: %s' % (' '.join(args), err.strip()))
    return out.strip()


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
        return FileStore(self.root, 'local', self.ctx.log, keep=(MARKER,))

    def _raw(self, uuid):
        return self.files.raw(uuid)

    def _check_sr(self):
        if not os.path.exists(os.path.join(self.root, MARKER)):
            raise SRError('SRUnavailable', 'no SR at %s (is the filesystem mounted?)'
                          % self.root)

    # --- SR ------------------------------------------------------------------------
    def sr_create(self, physical_size):
        if not os.path.isdir(self.config['location']):
            raise SRError('SRUnavailable', 'location %s is not a directory'
                          % self.config['location'])
        if os.path.exists(os.path.join(self.root, MARKER)):
            raise SRError('SRExists', self.root)
        if not os.path.isdir(self.root):  # a killed sr_create may have made it
            os.mkdir(self.root)
        marker = os.path.join(self.root, MARKER)
        with open(marker + '.tmp', 'w') as f:
            f.write(self.sr_uuid + '\n')
        os.rename(marker + '.tmp', marker)

    def sr_delete(self):
        self._check_sr()
        self.files.collect_garbage(grace=0)
        left = self.files.scratch()
        if left:
            raise SRError('SRNotEmpty', '%s still holds %s' % (self.root, ', '.join(left)))
        os.unlink(os.path.join(self.root, MARKER))
        os.rmdir(self.root)

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
        for device in self._loops(uuid):
            _losetup('--set-capacity', device)
        return size

    def extents(self, uuid):
        fd = os.open(self._raw(uuid), os.O_RDONLY)
        try:
            return sparse.data_extents(fd)
        finally:
            os.close(fd)

    # --- datapath ------------------------------------------------------------------
    def _loops(self, uuid):
        out = _losetup('--associated', self._raw(uuid), '--noheadings',
                       '--output', 'NAME') if os.path.exists(self._raw(uuid)) else ''
        return [line.strip() for line in out.splitlines() if line.strip()]

    def attach(self, uuid, writable):
        existing = self._loops(uuid)
        if existing:
            return existing[0]
        args = ['--find', '--show']
        if not writable:
            args.append('--read-only')
        return _losetup(*(args + [self._raw(uuid)]))

    def detach(self, uuid):
        for device in self._loops(uuid):
            _losetup('--detach', device)
