"""The RBD driver: SR type ``rbd`` on a Ceph pool (layout.py: where things live;
docs/ceph.md: the admin view, each command's steps and recovery rule, and how the
driver is composed).

Every mutating primitive is an ordered sequence of backend steps with a crash
point (``rbd.<command>.<step>``) between two of them, bracketed by an intent in
the index (index.py). A command killed anywhere leaves a state the next scan on
the SR master rolls forward or back (recovery.py). ``RBDDriver`` keeps the
framework's primitives (framework/driver.py) and the VDI commands' steps; every
other concern is a collaborator it builds once per process, each knowing only
what it is handed:

  context.py   SRContext: device-config, pool/namespace, the connection, log,
               state dir, master or not, host identity
  watchers.py  Watchers: this host's client records, dead watchers evicted
               Images: opening an image (read-write: client recorded first)
  index.py     Index: the SR index, VDI entries and intents
  lease.py     Lease: the single-writer lease of a VDI
  reclaim.py   Reclaim: deletion deferred for dependants, image collection
  scan.py      Scan: the index checked against the images (sr_scan's list)
  recovery.py  Recovery: the intents of dead commands rolled forward or back
  attach.py    Attachments: this host's block devices (datapath.py does the mechanics)
  sr.py        SR: the SR's namespace and object, host files, statistics, probe
  cbt.py       extents by fast-diff, data_destroy
"""

from framework import crash
from framework.driver import Driver
from framework.errors import SRError
from framework.options import Option
from drivers.ceph import cbt
from drivers.ceph import layout as L
from drivers.ceph.attach import Attachments
from drivers.ceph.connection import ceph_error, mapped, rbd_module
from drivers.ceph.context import SRContext
from drivers.ceph.datapath import CHOICES as DATAPATHS
from drivers.ceph.index import Index
from drivers.ceph.lease import Lease
from drivers.ceph.reclaim import Reclaim
from drivers.ceph.recovery import Recovery
from drivers.ceph.scan import Scan
from drivers.ceph.sr import SR
from drivers.ceph.watchers import Images, Watchers


class RBDDriver(Driver):
    name = 'RBD'
    description = ('Ceph RBD: one RBD namespace per SR, one image per VDI, '
                   'native snapshots and copy-on-write clones')
    driver_version = '1.1.0'
    options = (
        Option('monitors', 'Ceph monitor addresses, comma-separated (ip[:port] or '
               '[v2:ip:3300,v1:ip:6789]); required unless conf names them'),
        Option('pool', 'RBD pool holding the SR', default='rbd'),
        Option('user', 'cephx user name, without "client."', default='admin'),
        Option('key', 'cephx key of the user', secret=True),
        Option('keyring', 'path of a keyring file holding the key (instead of key)'),
        Option('conf', 'path of a ceph.conf to read (monitors, keyring, tuning)'),
        Option('namespace', 'RBD namespace of the SR (default: the SR uuid)'),
        Option('data_pool', 'pool for image data, e.g. erasure-coded (metadata stays in pool)'),
        Option('datapath', 'how vdi_attach makes a block device', default='auto',
               choices=DATAPATHS),
        Option('max_clone_depth', 'clones deeper than this are flattened', default=5,
               kind=int),
        Option('connect_timeout', 'seconds to reach the monitors before failing with '
               'SRUnavailable', default=10, kind=int),
        Option('op_timeout', 'seconds an OSD operation or monitor command may take before '
               'failing with SRUnavailable (a stalled OSD)', default=20, kind=int),
        Option('gc_grace', 'seconds before the SR master rolls back a command another '
               'host left half done, or collects an image nothing names (default: 600)',
               kind=int),
    )
    thin_provisioning = True
    resize_online = True
    max_vdi_size = 64 * 1024 ** 4
    size_granularity = 512

    def __init__(self, sr_uuid, config, context):
        Driver.__init__(self, sr_uuid, config, context)
        self.site = site = SRContext(sr_uuid, config, context)
        self.watchers = Watchers(site)
        self.images = Images(site, self.watchers)
        self.index = Index(site, self.images)
        self.lease = Lease(site)
        self.reclaim = Reclaim(site, self.index, self.images, self.watchers)
        self.scanner = Scan(site, self.index, self.images, self.reclaim)
        self.recovery = Recovery(site, self.index, self.images, self.reclaim, self.watchers)
        self.attachments = Attachments(site, self.images, self.watchers)
        self.sr = SR(site, self.index, self.reclaim)

    # --- the SR -------------------------------------------------------------------------
    @mapped()
    def sr_create(self, physical_size):
        self.sr.create()

    @mapped()
    def sr_delete(self):
        self.sr.delete()

    @mapped('SRUnavailable')
    def sr_attach(self):
        self.sr.check()

    def sr_detach(self):
        # the framework refused if a VDI is still attached on this host
        self.sr.drop_host_files()

    @mapped()
    def sr_stats(self):
        return self.sr.stats()

    @mapped()
    def probe(self):
        return self.sr.probe()

    @mapped('SRScan')
    def collect_garbage(self):
        """sr_scan on the master, before list(): roll the commands that died forward
        or back (their intents); list() then collects orphan images."""
        if not self.ctx.is_master:
            return
        self.attachments.clean()   # kernel devices killed commands left mapped
        self.recovery.run()
        self.watchers.prune()

    @mapped('SRScan')
    def list(self):
        return self.scanner.list()

    # --- VDIs --------------------------------------------------------------------------
    @mapped()
    def get(self, uuid):
        found = self.index.read([L.VDI_PREFIX + uuid, L.USED_PREFIX + uuid])
        text = found.get(L.VDI_PREFIX + uuid)
        if not text:
            return None
        return L.volume(L.Entry.load(uuid, text), int(found.get(L.USED_PREFIX + uuid) or 0))

    @mapped('VDICreate')
    def create(self, uuid, size, meta):
        rbd = rbd_module()
        self.sr.check()
        self.index.begin('create', uuid, L.image_of(uuid))
        try:
            rbd.RBD().create(self.site.io, L.image_of(uuid), size, old_format=False,
                             features=L.FEATURES, data_pool=self.config.get('data_pool') or None)
        except rbd.ImageExists:
            raise SRError('VDIExists', 'image %s already exists in %s/%s'
                          % (uuid, self.site.pool, self.site.namespace))
        except rbd.Error as e:
            raise ceph_error(e, 'creating image %s' % uuid, 'VDICreate')
        crash.point('rbd.create.after-image')
        entry = L.Entry(uuid, L.IMAGE, L.image_of(uuid), '', size, meta)
        self.index.put(entry, used=0, done='create')
        return L.volume(entry, 0)

    @mapped()
    def set_meta(self, uuid, meta):
        entry = self.index.need(uuid)
        entry.meta = dict(meta)
        self.index.put(entry)

    @mapped('VDIDelete')
    def destroy(self, uuid):
        entry = self.index.need(uuid)
        self.lease.check(uuid, 'delete')
        if entry.kind == L.IMAGE:
            self.watchers.refuse_if_open(entry.image, 'delete VDI %s' % uuid)
        intent = self.index.begin('destroy', uuid, entry.image, entry.snap)
        self.reclaim.finish_delete(intent)

    # --- snapshots and clones -------------------------------------------------------------
    @mapped('VDISnapshot')
    def snapshot(self, uuid, new_uuid, meta):
        rbd = rbd_module()
        entry = self.index.need(uuid)
        if entry.kind != L.IMAGE:
            raise SRError('VDISnapshot', 'VDI %s is itself a snapshot; clone it first' % uuid)
        used = int(self.index.read([L.USED_PREFIX + uuid]).get(L.USED_PREFIX + uuid) or 0)
        self.index.begin('snapshot', new_uuid, entry.image, new_uuid)
        try:
            with self.images.open(entry.image) as img:
                img.create_snap(new_uuid)
                crash.point('rbd.snapshot.after-snap')
                snap = L.Entry(new_uuid, L.SNAP, entry.image, new_uuid, img.size(), meta)
                self.index.put(snap, image=img, used=used, done='snapshot')
        except rbd.Error as e:
            raise ceph_error(e, 'snapshot of %s' % uuid, 'VDISnapshot')
        return L.volume(snap, used)

    @mapped('VDIClone')
    def clone(self, uuid, new_uuid, meta):
        rbd = rbd_module()
        entry = self.index.need(uuid)
        max_depth = self.config['max_clone_depth']
        snap = L.clone_snap_name(new_uuid) if entry.kind == L.IMAGE else entry.snap
        self.index.begin('clone', new_uuid, entry.image, snap)
        try:
            with self.images.open(entry.image) as img:
                if entry.kind == L.IMAGE:
                    img.create_snap(snap)
                    crash.point('rbd.clone.after-snap')
                if not img.is_protected_snap(snap):
                    img.protect_snap(snap)
                crash.point('rbd.clone.after-protect')
                try:
                    depth = int(img.metadata_get(L.META_DEPTH))
                except (KeyError, ValueError):
                    depth = 0
                size = img.size() if entry.kind == L.IMAGE else entry.size
            child_name = L.image_of(new_uuid)
            rbd.RBD().clone(self.site.io, entry.image, snap, self.site.io, child_name,
                            features=L.FEATURES, data_pool=self.config.get('data_pool') or None)
            crash.point('rbd.clone.after-clone')
            flattened = False
            with self.images.open(child_name) as child:
                # librbd copied the parent's image metadata: none of it is the child's
                for key, _ in list(child.metadata_list()):
                    if key.startswith(L.META_PREFIX):
                        child.metadata_remove(key)
                crash.point('rbd.clone.after-strip')
                depth += 1
                if depth > max_depth:
                    child.flatten()
                    crash.point('rbd.clone.after-flatten')
                    depth, flattened = 0, True
                child.metadata_set(L.META_DEPTH, str(depth))
                new = L.Entry(new_uuid, L.IMAGE, child_name, '', size, meta)
                self.index.put(new, image=child, used=0, point='clone',
                               done=None if flattened else 'clone')
        except rbd.Error as e:
            raise ceph_error(e, 'clone of %s' % uuid, 'VDIClone')
        if flattened:
            self.ctx.log.info('clone %s flattened (depth would exceed %d)' % (new_uuid, max_depth))
            self.reclaim.gc_image(entry.image, ignore=new_uuid)
            crash.point('rbd.clone.after-gc')
            self.index.update(remove=(L.PENDING_PREFIX + new_uuid,))
        return L.volume(new, 0)

    @mapped()
    def revert(self, uuid, snapshot_uuid):
        rbd = rbd_module()
        entry, snap = self.index.need(uuid), self.index.need(snapshot_uuid)
        if snap.kind != L.SNAP or snap.image != entry.image or entry.kind != L.IMAGE:
            raise SRError('VDIUnavailable', 'VDI %s is not a snapshot held by the image of '
                          'VDI %s; revert needs a snapshot of that VDI' % (snapshot_uuid, uuid))
        self.lease.check(uuid, 'revert')
        self.watchers.refuse_if_open(entry.image, 'revert VDI %s' % uuid)
        self.index.begin('revert', uuid, entry.image, snap.snap)
        try:
            with self.images.open(entry.image) as img:
                img.rollback_to_snap(snap.snap)
                crash.point('rbd.revert.after-rollback')
                entry.size = img.size()
                self.index.put(entry, image=img, done='revert')
        except rbd.Error as e:
            raise ceph_error(e, 'revert of %s to %s' % (uuid, snapshot_uuid))

    @mapped('VDIResize')
    def resize(self, uuid, size):
        rbd = rbd_module()
        entry = self.index.need(uuid)
        if entry.kind != L.IMAGE:
            raise SRError('VDIResize', 'VDI %s is a snapshot (read-only)' % uuid)
        try:
            with self.images.open(entry.image) as img:
                current = img.size()
                if size < current:
                    raise SRError('VDISize', 'shrinking VDI %s from %d to %d bytes is refused: '
                                  'it would destroy data' % (uuid, current, size))
                self.index.begin('resize', uuid, entry.image, size=size)
                if size > current:
                    img.resize(size, allow_shrink=False)
                crash.point('rbd.resize.after-resize')
                entry.size = size
                self.index.put(entry, image=img, done='resize')
        except rbd.Error as e:
            raise ceph_error(e, 'resize of %s' % uuid, 'VDIResize')
        self.attachments.follow_size(uuid, size)
        return size

    # --- export helpers -----------------------------------------------------------------
    @mapped()
    def extents(self, uuid):
        """[(offset, length)] of the allocated parts of a VDI (fast-diff)."""
        entry = self.index.need(uuid)
        snap = entry.snap if entry.kind == L.SNAP else None
        with self.images.open(entry.image, read_only=True, snapshot=snap) as img:
            return cbt.diff(img, None, entry.size)

    @mapped()
    def changed_extents(self, uuid, base_uuid):
        """[(offset, length)] that differ between snapshot ``base_uuid`` and ``uuid``."""
        entry, base = self.index.need(uuid), self.index.need(base_uuid)
        if base.kind != L.SNAP or base.image != entry.image:
            raise SRError('VDIUnavailable', '%s is not a snapshot of the image of %s'
                          % (base_uuid, uuid))
        snap = entry.snap if entry.kind == L.SNAP else None
        with self.images.open(entry.image, read_only=True, snapshot=snap) as img:
            return cbt.diff(img, base.snap, entry.size)

    @mapped()
    def data_destroy(self, uuid):
        cbt.data_destroy(self.index.need(uuid), self.ctx.log)

    # --- this host: attach, lease ---------------------------------------------------------
    @mapped('VDIUnavailable')
    def attach(self, uuid, writable):
        entry = self.index.need(uuid)
        writable = writable and entry.kind == L.IMAGE
        if writable:
            self.lease.check(uuid, 'attach read-write', allow_host=self.ctx.host_id)
        return self.attachments.attach(entry, writable)

    @mapped('VDIUnavailable')
    def detach(self, uuid):
        record = self.attachments.detach(uuid)
        if record is None:
            return
        temp = record.get('temp_clone')
        if temp:
            self.reclaim.remove_image(temp)  # and collects a snapshot deleted while attached
            return
        self.attachments.await_release(record)
        if record.get('writable'):
            self._refresh_used(uuid)

    def _refresh_used(self, uuid):
        """Store the allocated bytes of a VDI in the index (scans read them from there)."""
        try:
            used = sum(length for _, length in self.extents(uuid))
            self.index.update({L.USED_PREFIX + uuid: str(used)})
        except Exception as e:  # best effort: a stale figure is not worth a failed detach
            self.ctx.log.error('refreshing allocation of %s: %s' % (uuid, e))

    def device_alive(self, uuid, path):
        """Whether ``path``, which an earlier attach returned, still serves the VDI."""
        return self.attachments.device_alive(uuid, path)

    @mapped('VDIUnavailable')
    def activate(self, uuid, writable):
        if not writable:
            return
        if self.index.need(uuid).kind == L.SNAP:
            return
        self.lease.acquire(uuid)

    @mapped('VDIUnavailable')
    def deactivate(self, uuid):
        self.lease.release(uuid)
