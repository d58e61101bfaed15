"""The Gluster driver: VDIs as sparse raw files on a Gluster volume, shared by the pool.

device-config as GlusterFSSR's: ``server=<host>:/<volume>`` plus ``backupservers``.
Each host mounts the volume with FUSE at sr_attach (under its state directory) and
unmounts it at sr_detach. Layout, metadata (user xattrs) and the crash-safe steps
are framework/files; this module adds the mount, the cross-host write lease and probe.
"""

import contextlib
import os
import shutil

from framework.driver import Driver
from framework.errors import SRError
from framework.options import Option
from framework.files import loop
from framework.files.meta import XattrMeta
from framework.files.store import FileStore
from drivers.gluster import lease
from drivers.gluster import mount as gmount

OWNER = 'gluster'


class GlusterDriver(Driver):
    name = 'Gluster'
    description = 'srkit Gluster driver: VDIs are sparse raw files on a Gluster volume ' \
                  '(FUSE), shared by every host of the pool'
    options = (
        Option('server', 'volfile server and volume, <host>:/<volume>', required=True),
        Option('backupservers', 'more volfile servers tried when the first is down, '
                                '<host>:<host>...'),
        Option('fetchattempts', 'how many times the client tries to fetch the volfile',
               kind=int),
        Option('server_copy', 'reflink: snapshot, clone and revert are copied by the '
                              'brick itself through libgfapi (glusterfs-api), for volumes '
                              'whose bricks are XFS with reflink or Btrfs (a copy in O(1)); '
                              'off: copies go through the mount.', default='off',
               choices=('off', 'reflink')),
        Option('mount_timeout', 'seconds a mount or unmount may take before the SR is '
                                'reported unavailable', default='30', kind=int),
    )
    thin_provisioning = True
    resize_online = True
    max_vdi_size = 16 * 1024 ** 4
    size_granularity = 512   # loop devices address 512-byte sectors

    def __init__(self, sr_uuid, config, context):
        Driver.__init__(self, sr_uuid, config, context)
        self.host, self.volume, self.backups = gmount.validate(config)
        self.mountpoint = os.path.join(context.state_dir, 'volume')
        self.root = os.path.join(self.mountpoint, sr_uuid or '')
        self.store = self._store(self.root)

    def _store(self, root):
        return FileStore(root, OWNER, self.ctx.log, meta=XattrMeta(),
                         keep_prefixes=(lease.PREFIX, lease.FENCED), copier=self._copy_file)

    def _copy_file(self, src, fd, dst):
        """Snapshot, clone and revert copy on the bricks (libgfapi) when the host can."""
        from drivers.gluster import gfapi
        from framework import sparse
        if self.config.get('server_copy') == 'reflink':
            copy = gfapi.copier([self.host] + self.backups, self.volume, self.mountpoint,
                                self.ctx.log, os.path.join(self.ctx.state_dir, 'gfapi.log'))
            if copy is not None:
                return copy(src, fd, dst)
        return sparse.clone_into(src, fd)

    # --- the mount ---------------------------------------------------------------------
    def _mount(self, mountpoint=None):
        mountpoint = mountpoint or self.mountpoint
        log_file = os.path.join(os.path.dirname(mountpoint), 'glusterfs-client.log')
        if gmount.mount(self.config, mountpoint, log_file):
            self.ctx.log.info('mounted %s:/%s at %s' % (self.host, self.volume, mountpoint))

    def _unmount(self, mountpoint=None):
        mountpoint = mountpoint or self.mountpoint
        if gmount.unmount(mountpoint, int(self.config.get('mount_timeout') or 30)):
            self.ctx.log.info('unmounted %s' % mountpoint)

    @contextlib.contextmanager
    def _mounted(self):
        """The volume mounted for the duration of one command that needs it."""
        was = gmount.mounted(self.mountpoint) is not None
        self._mount()
        try:
            yield
        finally:
            if not was:
                self._unmount()

    def _need_mount(self):
        if gmount.mounted(self.mountpoint) is None:
            # only sr_delete runs on an SR whose PBDs are unplugged: it unmounts at the end
            self._mount()
        gmount.ensure_healthy(self.mountpoint)


    # --- SR ------------------------------------------------------------------------------
    def sr_create(self, physical_size):
        with self._mounted():
            self.store.make(self.sr_uuid)

    def sr_delete(self):
        self._need_mount()
        self.store.remove()
        self._unmount()

    def sr_attach(self):
        self._mount()
        self.store.check('the volume holds no SR %s' % self.sr_uuid)

    def sr_detach(self):
        if gmount.mounted(self.mountpoint) is not None and os.path.isdir(self.root):
            busy = [name for name in os.listdir(self.root)
                    if name.endswith('.raw') and loop.devices(os.path.join(self.root, name))]
            if busy:
                raise SRError('SRInUse', 'loop devices still attached on this host: %s'
                              % ', '.join(busy))
        self._unmount()

    def sr_stats(self):
        self._need_mount()
        st = os.statvfs(self.mountpoint)
        total = st.f_blocks * st.f_frsize
        return total, total - st.f_bavail * st.f_frsize

    def probe(self):
        """SR directories on the volume, each with the bytes its files hold."""
        mountpoint = os.path.join(self.ctx.state_dir, 'probe-%d' % os.getpid())
        self._mount(mountpoint)
        try:
            found = []
            for name in sorted(os.listdir(mountpoint)):
                store = self._store(os.path.join(mountpoint, name))
                if store.exists():
                    found.append({'uuid': name, 'size': store.allocated(),
                                  'aggregate': '%s:/%s' % (self.host, self.volume)})
            return found
        finally:
            self._unmount(mountpoint)
            shutil.rmtree(mountpoint, ignore_errors=True)

    # --- volumes -----------------------------------------------------------------------
    def list(self):
        self._need_mount()
        self.store.check()
        return self.store.volumes()

    def get(self, uuid):
        self._need_mount()
        self.store.check()
        return self.store.volume(uuid)

    def collect_garbage(self):
        self._need_mount()
        self.store.check()
        self.store.collect_garbage()

    def create(self, uuid, size, meta):
        self._need_mount()
        self.store.check()
        return self.store.create(uuid, size, meta)

    def destroy(self, uuid):
        self._need_mount()
        lease.check(self.root, uuid, 'delete')
        self.store.destroy(uuid)

    def set_meta(self, uuid, meta):
        self._need_mount()
        self.store.set_meta(uuid, meta)

    def _need(self, uuid):
        volume = self.store.volume(uuid)
        if volume is None:
            raise SRError('VDIMissing', 'no VDI %s in SR %s' % (uuid, self.sr_uuid))
        return volume

    def _copy(self, uuid, new_uuid, meta, command):
        self._need_mount()
        volume, how = self.store.copy(uuid, new_uuid, meta, command)
        self.ctx.log.info('%s of %s to %s by %s' % (command, uuid, new_uuid, how))
        return volume

    def snapshot(self, uuid, new_uuid, meta):
        return self._copy(uuid, new_uuid, meta, 'snapshot')

    def clone(self, uuid, new_uuid, meta):
        return self._copy(uuid, new_uuid, meta, 'clone')

    def revert(self, uuid, snapshot_uuid):
        self._need_mount()
        lease.check(self.root, uuid, 'revert')
        how = self.store.revert(uuid, snapshot_uuid)
        self.ctx.log.info('reverted %s to %s by %s' % (uuid, snapshot_uuid, how))

    def resize(self, uuid, size):
        self._need_mount()
        size = self.store.resize(uuid, size)
        loop.refresh_capacity(self.store.raw(uuid))
        return size

    def extents(self, uuid):
        self._need_mount()
        self._need(uuid)
        return self.store.extents(uuid)

    # --- single writer -----------------------------------------------------------------
    def activate(self, uuid, writable):
        if not writable:
            return
        self._need_mount()
        if self._need(uuid).read_only:
            return
        lease.take(self.root, uuid, self.ctx.host_id)

    def deactivate(self, uuid):
        self._need_mount()
        lease.release(self.root, uuid, self.ctx.host_id, self.ctx.log)

    # --- datapath ------------------------------------------------------------------------
    def attach(self, uuid, writable):
        self._need_mount()
        self._need(uuid)
        # O_DIRECT: nothing of a VDI stays in this host's page cache when it moves hosts
        return loop.attach(self.store.raw(uuid), writable, direct=True)

    def detach(self, uuid):
        if gmount.mounted(self.mountpoint) is None:
            return
        loop.detach(self.store.raw(uuid))

