"""The reference driver: VDIs as sparse raw files in a directory.

Layout under device-config ``location``:
    <location>/<sr_uuid>/.srkit-sr          marks the directory as an SR
    <location>/<sr_uuid>/<vdi_uuid>.raw     the VDI, a sparse file
    <location>/<sr_uuid>/<vdi_uuid>.json    its framework metadata (sidecar)

Snapshots and clones are reflinks where the filesystem can (XFS, Btrfs) and
sparse copies elsewhere: each VDI stays an independent file, so deleting one
never affects another. A VDI is attached as a loop device.
"""

import os

from framework.driver import Driver, Volume
from framework.errors import SRError
from framework.options import Option
from framework import sparse

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
        Option('location', 'directory that holds the SR (one sub-directory per SR)',
               required=True),
    )
    thin_provisioning = True
    resize_online = True
    max_vdi_size = 16 * 1024 ** 4

    # --- paths and sidecars ------------------------------------------------------
    @property
    def root(self):
        return os.path.join(self.config['location'], self.sr_uuid)

    def _raw(self, uuid):
        return os.path.join(self.root, uuid + '.raw')

    def _volume(self, uuid):
        import json
        path = self._raw(uuid)
        try:
            st = os.stat(path)
            with open(os.path.join(self.root, uuid + '.json')) as f:
                meta = json.load(f)
        except (IOError, OSError, ValueError):
            return None
        return Volume(uuid, st.st_size, st.st_blocks * 512, meta,
                      read_only=meta.get('read_only') == 'true')

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
        os.mkdir(self.root)
        with open(os.path.join(self.root, MARKER), 'w') as f:
            f.write(self.sr_uuid + '\n')

    def sr_delete(self):
        self._check_sr()
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
        found = {}
        for name in os.listdir(self.root):
            if name.endswith('.raw'):
                volume = self._volume(name[:-4])
                if volume is not None:
                    found[volume.uuid] = volume
        return found

    def get(self, uuid):
        return self._volume(uuid)

    def create(self, uuid, size, meta):
        self._check_sr()
        fd = os.open(self._raw(uuid), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        self.set_meta(uuid, meta)
        return self._volume(uuid)

    def destroy(self, uuid):
        for suffix in ('.raw', '.json'):
            try:
                os.unlink(os.path.join(self.root, uuid + suffix))
            except OSError:
                pass

    def set_meta(self, uuid, meta):
        import json
        path = os.path.join(self.root, uuid + '.json')
        with open(path + '.tmp', 'w') as f:
            json.dump(meta, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(path + '.tmp', path)

    def _copy(self, uuid, new_uuid, meta):
        how = sparse.clone_file(self._raw(uuid), self._raw(new_uuid))
        self.ctx.log.info('copied %s to %s by %s' % (uuid, new_uuid, how))
        self.set_meta(new_uuid, meta)
        return self._volume(new_uuid)

    def snapshot(self, uuid, new_uuid, meta):
        return self._copy(uuid, new_uuid, meta)

    def clone(self, uuid, new_uuid, meta):
        return self._copy(uuid, new_uuid, meta)

    def revert(self, uuid, snapshot_uuid):
        scratch = self._raw(uuid) + '.revert'
        if os.path.exists(scratch):
            os.unlink(scratch)
        sparse.clone_file(self._raw(snapshot_uuid), scratch)
        os.chmod(scratch, 0o600)
        os.rename(scratch, self._raw(uuid))

    def resize(self, uuid, size):
        os.truncate(self._raw(uuid), size)
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
