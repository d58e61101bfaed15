"""The RBD driver: SR type ``rbd`` on a Ceph pool (layout.py: where things live;
docs/ceph.md: the admin view and each command's steps and recovery rule).

Every mutating primitive is an ordered sequence of backend steps with a crash
point (``rbd.<command>.<step>``) between two of them, bracketed by an intent in
the index (index.py). A command killed anywhere leaves a state the next scan on
the SR master rolls forward or back (scan.py). The concerns live apart:

  index.py    the SR index and the intents          scan.py    list, repair, recovery
  reclaim.py  deletion deferred for dependants      lease.py   write lease, dead watchers
  attach.py   vdi_attach/detach                     sr.py      SR-level primitives
"""

import os
import time

from framework import crash
from framework.driver import Driver, Volume
from framework.errors import SRError
from framework.options import Option
from drivers.ceph import layout as L
from drivers.ceph.attach import AttachMixin, FEATURES
from drivers.ceph.connection import ceph_error, mapped, rbd_module
from drivers.ceph.datapath import CHOICES as DATAPATHS
from drivers.ceph.index import IndexMixin
from drivers.ceph.lease import LeaseMixin
from drivers.ceph.reclaim import ReclaimMixin
from drivers.ceph.scan import ScanMixin
from drivers.ceph.sr import SRMixin


class RBDDriver(SRMixin, ScanMixin, IndexMixin, ReclaimMixin, LeaseMixin, AttachMixin,
                Driver):
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
        self._cluster = None
        self.pool = config.get('pool') or 'rbd'
        self.namespace = L.namespace_of(sr_uuid or '', config)

    # --- connection ---------------------------------------------------------------
    @property
    def cluster(self):
        if self._cluster is None:
            from drivers.ceph.connection import Cluster, validate_config
            validate_config(self.config)
            self._cluster = Cluster(self.config)
        return self._cluster

    @property
    def io(self):
        return self.cluster.ioctx(self.pool, self.namespace)

    def _image(self, name, read_only=False, snapshot=None):
        """An open image; a read-write open first records this process's client and
        evicts the watch of a killed driver process (lease.py)."""
        rbd = rbd_module()
        if not read_only:
            self._register_client()
        try:
            img = rbd.Image(self.io, name, snapshot=snapshot, read_only=read_only)
        except rbd.ImageNotFound:
            raise SRError('VDIMissing', 'no RBD image %s in %s/%s' % (name, self.pool,
                                                                      self.namespace))
        if not read_only:
            try:
                me = self.cluster.rados.get_instance_id()
                if any(self._dead_client(w['id']) for w in img.watchers_list()
                       if int(w['id']) != me):
                    self._evict_dead_watchers(name)
            except BaseException:
                # never leave an open image to the garbage collector: closed after the
                # cluster handle is shut down, librbd may abort the process
                img.close()
                raise
        return img

    @staticmethod
    def _volume(entry, used):
        return Volume(entry.uuid, entry.size, used, entry.meta,
                      read_only=entry.kind == L.SNAP or entry.meta.get('read_only') == 'true')

    # --- VDIs --------------------------------------------------------------------------
    @mapped()
    def get(self, uuid):
        found = self._omap([L.VDI_PREFIX + uuid, L.USED_PREFIX + uuid])
        text = found.get(L.VDI_PREFIX + uuid)
        if not text:
            return None
        return self._volume(L.Entry.load(uuid, text), int(found.get(L.USED_PREFIX + uuid) or 0))

    @mapped('VDICreate')
    def create(self, uuid, size, meta):
        rbd = rbd_module()
        self._omap([L.SR_UUID_KEY])
        self._begin('create', uuid, L.image_of(uuid))
        try:
            rbd.RBD().create(self.io, L.image_of(uuid), size, old_format=False,
                             features=FEATURES, data_pool=self.config.get('data_pool') or None)
        except rbd.ImageExists:
            raise SRError('VDIExists', 'image %s already exists in %s/%s'
                          % (uuid, self.pool, self.namespace))
        except rbd.Error as e:
            raise ceph_error(e, 'creating image %s' % uuid, 'VDICreate')
        crash.point('rbd.create.after-image')
        entry = L.Entry(uuid, L.IMAGE, L.image_of(uuid), '', size, meta)
        self._put(entry, used=0, done='create')
        return self._volume(entry, 0)

    @mapped()
    def set_meta(self, uuid, meta):
        entry = self._need(uuid)
        entry.meta = dict(meta)
        self._put(entry)

    @mapped('VDIDelete')
    def destroy(self, uuid):
        entry = self._need(uuid)
        self._check_lease(uuid, 'delete')
        if entry.kind == L.IMAGE:
            self._refuse_if_open(entry.image, 'delete VDI %s' % uuid)
        intent = self._begin('destroy', uuid, entry.image, entry.snap)
        self._finish_delete(intent)

    # --- snapshots and clones -------------------------------------------------------------
    @mapped('VDISnapshot')
    def snapshot(self, uuid, new_uuid, meta):
        rbd = rbd_module()
        entry = self._need(uuid)
        if entry.kind != L.IMAGE:
            raise SRError('VDISnapshot', 'VDI %s is itself a snapshot; clone it first' % uuid)
        used = int(self._omap([L.USED_PREFIX + uuid]).get(L.USED_PREFIX + uuid) or 0)
        self._begin('snapshot', new_uuid, entry.image, new_uuid)
        try:
            with self._image(entry.image) as img:
                img.create_snap(new_uuid)
                crash.point('rbd.snapshot.after-snap')
                snap = L.Entry(new_uuid, L.SNAP, entry.image, new_uuid, img.size(), meta)
                self._put(snap, image=img, used=used, done='snapshot')
        except rbd.Error as e:
            raise ceph_error(e, 'snapshot of %s' % uuid, 'VDISnapshot')
        return self._volume(snap, used)

    @mapped('VDIClone')
    def clone(self, uuid, new_uuid, meta):
        rbd = rbd_module()
        entry = self._need(uuid)
        max_depth = self.config['max_clone_depth']
        snap = L.clone_snap_name(new_uuid) if entry.kind == L.IMAGE else entry.snap
        self._begin('clone', new_uuid, entry.image, snap)
        try:
            with self._image(entry.image) as img:
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
            rbd.RBD().clone(self.io, entry.image, snap, self.io, child_name,
                            features=FEATURES, data_pool=self.config.get('data_pool') or None)
            crash.point('rbd.clone.after-clone')
            flattened = False
            with self._image(child_name) as child:
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
                self._put(new, image=child, used=0, point='clone',
                          done=None if flattened else 'clone')
        except rbd.Error as e:
            raise ceph_error(e, 'clone of %s' % uuid, 'VDIClone')
        if flattened:
            self.ctx.log.info('clone %s flattened (depth would exceed %d)' % (new_uuid, max_depth))
            self._gc_image(entry.image, ignore=new_uuid)
            crash.point('rbd.clone.after-gc')
            self._index_set(remove=(L.PENDING_PREFIX + new_uuid,))
        return self._volume(new, 0)

    @mapped()
    def revert(self, uuid, snapshot_uuid):
        rbd = rbd_module()
        entry, snap = self._need(uuid), self._need(snapshot_uuid)
        if snap.kind != L.SNAP or snap.image != entry.image or entry.kind != L.IMAGE:
            raise SRError('VDIUnavailable', 'VDI %s is not a snapshot held by the image of '
                          'VDI %s; revert needs a snapshot of that VDI' % (snapshot_uuid, uuid))
        self._check_lease(uuid, 'revert')
        self._refuse_if_open(entry.image, 'revert VDI %s' % uuid)
        self._begin('revert', uuid, entry.image, snap.snap)
        try:
            with self._image(entry.image) as img:
                img.rollback_to_snap(snap.snap)
                crash.point('rbd.revert.after-rollback')
                entry.size = img.size()
                self._put(entry, image=img, done='revert')
        except rbd.Error as e:
            raise ceph_error(e, 'revert of %s to %s' % (uuid, snapshot_uuid))

    @mapped('VDIResize')
    def resize(self, uuid, size):
        rbd = rbd_module()
        entry = self._need(uuid)
        if entry.kind != L.IMAGE:
            raise SRError('VDIResize', 'VDI %s is a snapshot (read-only)' % uuid)
        try:
            with self._image(entry.image) as img:
                current = img.size()
                if size < current:
                    raise SRError('VDISize', 'shrinking VDI %s from %d to %d bytes is refused: '
                                  'it would destroy data' % (uuid, current, size))
                self._begin('resize', uuid, entry.image, size=size)
                if size > current:
                    img.resize(size, allow_shrink=False)
                crash.point('rbd.resize.after-resize')
                entry.size = size
                self._put(entry, image=img, done='resize')
        except rbd.Error as e:
            raise ceph_error(e, 'resize of %s' % uuid, 'VDIResize')
        self._follow_size(uuid, size)
        return size

    def _follow_size(self, uuid, size):
        """Make this host's block device of the VDI show the new size."""
        from drivers.ceph import datapath
        record = datapath.load_record(self.ctx.state_dir, uuid)
        if record:
            deadline = time.time() + 10
            path = os.path.join(record.get('mount', ''), record.get('image', ''))
            while record.get('kind') == 'fuse' and time.time() < deadline:
                try:
                    if os.stat(path).st_size >= size:
                        break
                except OSError:
                    break
                time.sleep(0.05)
            datapath.refresh_size(record)

    # --- export helpers -----------------------------------------------------------------
    @mapped()
    def extents(self, uuid):
        """[(offset, length)] of the allocated parts of a VDI (fast-diff)."""
        entry = self._need(uuid)
        snap = entry.snap if entry.kind == L.SNAP else None
        with self._image(entry.image, read_only=True, snapshot=snap) as img:
            return self._diff(img, None, entry.size)

    @mapped()
    def changed_extents(self, uuid, base_uuid):
        """[(offset, length)] that differ between snapshot ``base_uuid`` and ``uuid``."""
        entry, base = self._need(uuid), self._need(base_uuid)
        if base.kind != L.SNAP or base.image != entry.image:
            raise SRError('VDIUnavailable', '%s is not a snapshot of the image of %s'
                          % (base_uuid, uuid))
        snap = entry.snap if entry.kind == L.SNAP else None
        with self._image(entry.image, read_only=True, snapshot=snap) as img:
            return self._diff(img, base.snap, entry.size)

    @mapped()
    def data_destroy(self, uuid):
        from drivers.ceph import cbt
        cbt.data_destroy(self, uuid)

    @staticmethod
    def _diff(img, from_snap, size):
        """Extents written since ``from_snap`` (None: allocated ones), by fast-diff (the
        object map, no I/O) in whole objects. Since a snapshot they are then made
        exact: a byte-exact diff (one list-snaps per object) of the changed objects
        only. Whole objects alone made a delta of 1 MiB writes read 4x the changed
        bytes; exact diffs alone cost a request for every object of the image."""
        def collect(into, discards=False):
            # since a snapshot, a discarded range changed too (it reads zeros now):
            # a delta or a CBT bitmap without it would keep the old data
            def cb(offset, length, exists):
                if exists or discards:
                    if into and into[-1][0] + into[-1][1] == offset:
                        into[-1] = (into[-1][0], into[-1][1] + length)
                    else:
                        into.append((offset, length))
                return 0
            return cb
        objects, extents = [], []
        since = from_snap is not None
        img.diff_iterate(0, size, from_snap, collect(objects, since), include_parent=True,
                         whole_object=True)
        if not since:
            return objects
        for offset, length in objects:
            img.diff_iterate(offset, length, from_snap, collect(extents, True),
                             include_parent=True, whole_object=False)
        return extents

