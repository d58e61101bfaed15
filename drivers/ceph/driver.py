"""The RBD driver: SR type ``rbd`` on a Ceph pool (see layout.py for the layout
and docs/ceph.md for the admin view)."""

import os
import time

from framework.driver import Driver, Volume
from framework.errors import SRError
from framework.options import Option
from drivers.ceph import layout as L
from drivers.ceph.datapath import CHOICES as DATAPATHS

# layering | exclusive-lock | object-map | fast-diff | deep-flatten
FEATURES = 1 | 4 | 8 | 16 | 32
OMAP_PAGE = 1024   # the OSD caps a reply (osd_max_omap_entries_per_request)


def _mapped(fault='SMGeneral'):
    """Turn a rados/rbd exception escaping a primitive into an SR fault."""
    def wrap(fn):
        def primitive(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except SRError:
                raise
            except Exception as e:
                if type(e).__module__ in ('rados', 'rbd'):
                    raise _ceph_error(e, '%s %s' % (fn.__name__, args[0] if args else ''), fault)
                raise
        primitive.__name__ = fn.__name__
        primitive.__doc__ = fn.__doc__
        return primitive
    return wrap


def _rbd():
    import rbd
    return rbd


def _rados():
    import rados
    return rados


class RBDDriver(Driver):
    name = 'RBD'
    description = ('Ceph RBD: one RBD namespace per SR, one image per VDI, '
                   'native snapshots and copy-on-write clones')
    driver_version = '1.0.0'
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
        rbd = _rbd()
        try:
            return rbd.Image(self.io, name, snapshot=snapshot, read_only=read_only)
        except rbd.ImageNotFound:
            raise SRError('VDIMissing', 'no RBD image %s in %s/%s' % (name, self.pool,
                                                                      self.namespace))

    # --- the SR index ----------------------------------------------------------------
    def _omap(self, keys=None, obj=L.SR_OBJECT):
        """{key: value} of the index (all keys, or only ``keys``); SRUnavailable if
        the SR object is gone."""
        rados = _rados()
        out = {}
        try:
            if keys is not None:
                with rados.ReadOpCtx() as op:
                    it, _ = self.io.get_omap_vals_by_keys(op, tuple(keys))
                    self.io.operate_read_op(op, obj)
                    out.update(it)
            else:
                start = ''
                while True:
                    with rados.ReadOpCtx() as op:
                        it, _ = self.io.get_omap_vals(op, start, '', OMAP_PAGE)
                        self.io.operate_read_op(op, obj)
                        page = list(it)
                    if not page:
                        break  # the OSD may return fewer than asked: stop on an empty page
                    out.update(page)
                    start = page[-1][0]
        except rados.ObjectNotFound:
            raise SRError('SRUnavailable', 'no SR %s in pool %s namespace %s (deleted, or '
                          'wrong pool/namespace in device-config)'
                          % (self.sr_uuid, self.pool, self.namespace))
        except rados.Error as e:
            raise _ceph_error(e, 'reading the SR index')
        return dict((k, v.decode('utf-8') if isinstance(v, bytes) else (v or ''))
                    for k, v in out.items())

    def _index_set(self, values=None, remove=()):
        rados = _rados()
        try:
            with rados.WriteOpCtx() as op:
                if values:
                    keys = tuple(values)
                    self.io.set_omap(op, keys, tuple(values[k].encode('utf-8') for k in keys))
                if remove:
                    self.io.remove_omap_keys(op, tuple(remove))
                self.io.operate_write_op(op, L.SR_OBJECT)
        except rados.Error as e:
            raise _ceph_error(e, 'updating the SR index')

    def _put(self, entry, image=None, used=None):
        """Record ``entry`` in the image metadata (authoritative) and in the index."""
        meta_key = L.META_VDI_PREFIX + entry.uuid
        text = entry.dump()
        if image is not None:
            image.metadata_set(meta_key, text)
        else:
            with self._image(entry.image) as img:
                img.metadata_set(meta_key, text)
        values = {L.VDI_PREFIX + entry.uuid: text}
        if used is not None:
            values[L.USED_PREFIX + entry.uuid] = str(int(used))
        self._index_set(values)

    def _entry(self, uuid):
        found = self._omap([L.VDI_PREFIX + uuid])
        text = found.get(L.VDI_PREFIX + uuid)
        return L.Entry.load(uuid, text) if text else None

    def _need(self, uuid):
        entry = self._entry(uuid)
        if entry is None:
            raise SRError('VDIMissing', 'no VDI %s in SR %s' % (uuid, self.sr_uuid))
        return entry

    @staticmethod
    def _volume(entry, used):
        return Volume(entry.uuid, entry.size, used, entry.meta,
                      read_only=entry.kind == L.SNAP or entry.meta.get('read_only') == 'true')

    # --- SR ----------------------------------------------------------------------------
    @_mapped()
    def sr_create(self, physical_size):
        rbd, rados = _rbd(), _rados()
        root = self.cluster.ioctx(self.pool, '')
        try:
            if self.namespace and not rbd.RBD().namespace_exists(root, self.namespace):
                rbd.RBD().namespace_create(root, self.namespace)
            with rados.WriteOpCtx() as op:
                op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                keys = (L.SR_FORMAT_KEY, L.SR_UUID_KEY, L.SR_CREATED_KEY)
                vals = (L.FORMAT, self.sr_uuid, time.strftime('%Y%m%dT%H:%M:%SZ', time.gmtime()))
                self.io.set_omap(op, keys, tuple(v.encode() for v in vals))
                self.io.operate_write_op(op, L.SR_OBJECT)
        except rados.ObjectExists:
            raise SRError('SRExists', 'pool %s namespace %s already holds an SR'
                          % (self.pool, self.namespace))
        except (rados.Error, rbd.Error) as e:
            raise _ceph_error(e, 'creating SR in %s/%s' % (self.pool, self.namespace))

    @_mapped()
    def sr_delete(self):
        rbd, rados = _rbd(), _rados()
        self._omap([L.SR_UUID_KEY])  # SRUnavailable if there is no SR
        # only retained images (no VDI) can be left: the framework checked list() is empty
        for _ in range(3):
            names = [n for n in rbd.RBD().list(self.io)]
            if not names:
                break
            for name in names:
                self._purge_image(name)
        try:
            for obj in list(self.io.list_objects()):
                if obj.key.startswith(L.LEASE_PREFIX) or obj.key == L.SR_OBJECT:
                    self.io.remove_object(obj.key)
            root = self.cluster.ioctx(self.pool, '')
            if self.namespace and not self.config.get('namespace'):
                rbd.RBD().namespace_remove(root, self.namespace)
        except (rados.Error, rbd.Error) as e:
            raise _ceph_error(e, 'deleting SR %s' % self.sr_uuid)

    def _purge_image(self, name):
        """Remove an image and all its snapshots (sr_delete of an SR without VDIs)."""
        rbd = _rbd()
        try:
            with self._image(name) as img:
                for snap in list(img.list_snaps()):
                    with self._image(name, read_only=True, snapshot=snap['name']) as s:
                        if list(s.list_children2()):
                            continue  # goes when its children go (next round)
                    if img.is_protected_snap(snap['name']):
                        img.unprotect_snap(snap['name'])
                    img.remove_snap(snap['name'])
            rbd.RBD().remove(self.io, name)
        except (rbd.ImageBusy, rbd.ImageHasSnapshots):
            pass
        except SRError:
            pass

    @_mapped('SRUnavailable')
    def sr_attach(self):
        self._omap([L.SR_UUID_KEY])

    @_mapped()
    def sr_stats(self):
        """(size, used) of the pool from the cluster's own statistics (needs a mgr)."""
        import json
        rados = _rados()
        cmd = json.dumps({'prefix': 'df', 'format': 'json'})
        try:
            ret, out, err = self.cluster.rados.mon_command(cmd, b'', timeout=15)
        except rados.Error as e:
            raise _ceph_error(e, 'ceph df')
        if ret == 0:
            df = json.loads(out.decode('utf-8'))
            for pool in df.get('pools', ()):
                if pool.get('name') == (self.config.get('data_pool') or self.pool):
                    stats = pool.get('stats', {})
                    used = int(stats.get('stored', stats.get('bytes_used', 0)))
                    avail = int(stats.get('max_avail', 0))
                    return used + avail, used
        # no permission for df: the whole cluster's raw figures
        stats = self.cluster.rados.get_cluster_stats()
        return stats['kb'] * 1024, stats['kb_used'] * 1024

    @_mapped()
    def probe(self):
        """SRs in the pool: every namespace holding an SR object (plus the default one)."""
        rbd, rados = _rbd(), _rados()
        root = self.cluster.ioctx(self.pool, '')
        found = []
        try:
            spaces = [''] + sorted(rbd.RBD().namespace_list(root))
        except rbd.Error as e:
            raise _ceph_error(e, 'listing namespaces of pool %s' % self.pool)
        for ns in spaces:
            io = self.cluster.ioctx(self.pool, ns)
            try:
                with rados.ReadOpCtx() as op:
                    it, _ = io.get_omap_vals_by_keys(op, (L.SR_UUID_KEY,))
                    io.operate_read_op(op, L.SR_OBJECT)
                    vals = dict(it)
            except rados.ObjectNotFound:
                continue
            uuid = vals.get(L.SR_UUID_KEY, b'').decode() or ns
            found.append({'uuid': uuid, 'name_label': 'rbd %s/%s' % (self.pool, ns or '-'),
                          'aggregate': '%s/%s' % (self.pool, ns)})
        if self.pool.startswith(L.LEGACY_POOL_PREFIX) or not found:
            for name in self.cluster.rados.list_pools():
                if name.startswith(L.LEGACY_POOL_PREFIX):
                    found.append({'uuid': name[len(L.LEGACY_POOL_PREFIX):],
                                  'name_label': 'RBDSR v1 pool %s' % name,
                                  'aggregate': name})
        return found

    # --- VDIs --------------------------------------------------------------------------
    @_mapped('SRScan')
    def list(self):
        rbd = _rbd()
        index = self._omap()
        try:
            images = set(rbd.RBD().list(self.io))
        except rbd.Error as e:
            raise _ceph_error(e, 'listing images', 'SRScan')
        entries, used, retained = {}, {}, set()
        for key, value in index.items():
            if key.startswith(L.VDI_PREFIX):
                entries[key[len(L.VDI_PREFIX):]] = L.Entry.load(key[len(L.VDI_PREFIX):], value)
            elif key.startswith(L.USED_PREFIX):
                used[key[len(L.USED_PREFIX):]] = int(value or 0)
            elif key.startswith(L.RETAINED_PREFIX):
                retained.add(key[len(L.RETAINED_PREFIX):])
        known = set(e.image for e in entries.values()) | retained
        stale = [u for u, e in entries.items() if e.image not in images]
        unknown = [n for n in images if n not in known
                   and not n.startswith(L.ATTACH_CLONE_PREFIX)]
        if stale or unknown:
            self._repair(entries, stale, unknown)
        return dict((u, self._volume(e, used.get(u, 0))) for u, e in entries.items())

    def _repair(self, entries, stale, unknown):
        """Bring the index in line with the images (the authoritative metadata)."""
        rbd = _rbd()
        remove = [L.VDI_PREFIX + u for u in stale] + [L.USED_PREFIX + u for u in stale]
        for u in stale:
            self.ctx.log.info('index: dropping %s (image %s is gone)' % (u, entries[u].image))
            del entries[u]
        values = {}
        for name in unknown:
            try:
                with self._image(name, read_only=True) as img:
                    md = dict(img.metadata_list())
                    snaps = dict((s['name'], s['size']) for s in img.list_snaps())
            except (SRError, rbd.Error):
                continue
            found = False
            for key, text in md.items():
                if not key.startswith(L.META_VDI_PREFIX):
                    continue
                entry = L.Entry.load(key[len(L.META_VDI_PREFIX):], text)
                if entry.kind == L.SNAP and entry.snap not in snaps:
                    continue
                if entry.kind == L.SNAP:
                    entry.size = snaps[entry.snap]
                entry.image = name
                entries[entry.uuid] = entry
                values[L.VDI_PREFIX + entry.uuid] = entry.dump()
                found = True
                self.ctx.log.info('index: restored %s from image %s' % (entry.uuid, name))
            if not found or L.META_RETAINED in md:
                values[L.RETAINED_PREFIX + name] = ''
        if values or remove:
            self._index_set(values, remove)

    @_mapped()
    def get(self, uuid):
        found = self._omap([L.VDI_PREFIX + uuid, L.USED_PREFIX + uuid])
        text = found.get(L.VDI_PREFIX + uuid)
        if not text:
            return None
        return self._volume(L.Entry.load(uuid, text), int(found.get(L.USED_PREFIX + uuid) or 0))

    @_mapped('VDICreate')
    def create(self, uuid, size, meta):
        rbd = _rbd()
        self._omap([L.SR_UUID_KEY])
        try:
            rbd.RBD().create(self.io, L.image_of(uuid), size, old_format=False,
                             features=FEATURES, data_pool=self.config.get('data_pool') or None)
        except rbd.ImageExists:
            raise SRError('VDIExists', 'image %s already exists in %s/%s'
                          % (uuid, self.pool, self.namespace))
        except rbd.Error as e:
            raise _ceph_error(e, 'creating image %s' % uuid, 'VDICreate')
        entry = L.Entry(uuid, L.IMAGE, L.image_of(uuid), '', size, meta)
        self._put(entry, used=0)
        return self._volume(entry, 0)

    @_mapped()
    def set_meta(self, uuid, meta):
        entry = self._need(uuid)
        entry.meta = dict(meta)
        self._put(entry)

    @_mapped('VDIDelete')
    def destroy(self, uuid):
        rbd = _rbd()
        entry = self._need(uuid)
        self._check_lease(uuid, 'delete')
        try:
            if entry.kind == L.IMAGE:
                self._destroy_image_vdi(entry)
            else:
                self._destroy_snap_vdi(entry)
        except rbd.Error as e:
            raise _ceph_error(e, 'deleting VDI %s' % uuid, 'VDIDelete')

    def _forget(self, entry, img):
        try:
            img.metadata_remove(L.META_VDI_PREFIX + entry.uuid)
        except KeyError:
            pass
        self._index_set(remove=(L.VDI_PREFIX + entry.uuid, L.USED_PREFIX + entry.uuid))

    def _destroy_image_vdi(self, entry):
        with self._image(entry.image) as img:
            watchers = self._foreign_watchers(img)
            if watchers:
                raise SRError('VDIInUse', 'image %s is open by %s' % (
                    entry.image, ', '.join(w['addr'] for w in watchers)))
            for snap in list(img.list_snaps()):
                if snap['name'].startswith(L.CLONE_SNAP_PREFIX):
                    self._drop_snap_if_unused(img, entry.image, snap['name'])
            keep = [s['name'] for s in img.list_snaps()]
            self._forget(entry, img)
            if keep:
                # snapshots that are VDIs, or clones hanging from it: retain the image
                img.metadata_set(L.META_RETAINED, '1')
                self._index_set({L.RETAINED_PREFIX + entry.image: ''})
                self.ctx.log.info('VDI %s deleted; image retained for %d dependant snapshot(s)'
                                  % (entry.uuid, len(keep)))
                return
        self._remove_image(entry.image)

    def _destroy_snap_vdi(self, entry):
        with self._image(entry.image) as img:
            self._forget(entry, img)
            self._drop_snap_if_unused(img, entry.image, entry.snap)
        self._gc_image(entry.image)

    def _drop_snap_if_unused(self, img, image, snap):
        """Remove a snapshot nobody needs: not a VDI, no clone children."""
        rbd = _rbd()
        try:
            img.metadata_get(L.META_VDI_PREFIX + snap)
            return False  # still a VDI
        except KeyError:
            pass
        try:
            with self._image(image, read_only=True, snapshot=snap) as s:
                if list(s.list_children2()):
                    return False
        except rbd.ImageNotFound:
            return True
        if img.is_protected_snap(snap):
            img.unprotect_snap(snap)
        img.remove_snap(snap)
        return True

    def _remove_image(self, name):
        """Remove an image, then collect what it hung from."""
        rbd = _rbd()
        parent = None
        try:
            with self._image(name, read_only=True) as img:
                try:
                    spec = img.get_parent_image_spec()
                    if spec.get('pool_name') == self.pool and \
                            spec.get('pool_namespace', '') == self.namespace:
                        parent = spec['image_name']
                except rbd.ImageNotFound:
                    pass
        except SRError:
            return
        for attempt in range(20):
            try:
                rbd.RBD().remove(self.io, name)
                break
            except rbd.ImageNotFound:
                break
            except rbd.ImageBusy:
                # a watcher that just closed is still registered for a moment
                if attempt == 19:
                    raise SRError('VDIInUse', 'image %s is still open somewhere' % name)
                time.sleep(0.25)
        self._index_set(remove=(L.RETAINED_PREFIX + name,))
        try:
            self.io.remove_object(L.LEASE_PREFIX + name)
        except Exception:
            pass
        if parent:
            self._gc_image(parent)

    def _gc_image(self, name):
        """Drop unused hidden snapshots of ``name``; remove it when it is retained
        (no VDI of its own) and nothing depends on it any more."""
        rbd = _rbd()
        try:
            with self._image(name) as img:
                md = dict(img.metadata_list())
                for snap in list(img.list_snaps()):
                    self._drop_snap_if_unused(img, name, snap['name'])
                if L.META_VDI_PREFIX + name in md or list(img.list_snaps()):
                    return
                if L.META_RETAINED not in md:
                    return
        except SRError:
            return
        except rbd.Error as e:
            self.ctx.log.error('gc of %s: %s' % (name, e))
            return
        self.ctx.log.info('removing retained image %s: its last dependant is gone' % name)
        self._remove_image(name)

    # --- snapshots and clones -------------------------------------------------------------
    @_mapped('VDISnapshot')
    def snapshot(self, uuid, new_uuid, meta):
        rbd = _rbd()
        entry = self._need(uuid)
        if entry.kind != L.IMAGE:
            raise SRError('VDISnapshot', 'VDI %s is itself a snapshot; clone it first' % uuid)
        used = int(self._omap([L.USED_PREFIX + uuid]).get(L.USED_PREFIX + uuid) or 0)
        try:
            with self._image(entry.image) as img:
                img.create_snap(new_uuid)
                snap = L.Entry(new_uuid, L.SNAP, entry.image, new_uuid, img.size(), meta)
                self._put(snap, image=img, used=used)
        except rbd.Error as e:
            raise _ceph_error(e, 'snapshot of %s' % uuid, 'VDISnapshot')
        return self._volume(snap, used)

    @_mapped('VDIClone')
    def clone(self, uuid, new_uuid, meta):
        rbd = _rbd()
        entry = self._need(uuid)
        max_depth = self.config['max_clone_depth']
        try:
            with self._image(entry.image) as img:
                if entry.kind == L.IMAGE:
                    snap = L.clone_snap_name(new_uuid)
                    img.create_snap(snap)
                else:
                    snap = entry.snap
                if not img.is_protected_snap(snap):
                    img.protect_snap(snap)
                try:
                    depth = int(img.metadata_get(L.META_DEPTH))
                except (KeyError, ValueError):
                    depth = 0
                size = img.size() if entry.kind == L.IMAGE else entry.size
            rbd.RBD().clone(self.io, entry.image, snap, self.io, L.image_of(new_uuid),
                            features=FEATURES, data_pool=self.config.get('data_pool') or None)
            flattened = False
            with self._image(L.image_of(new_uuid)) as child:
                depth += 1
                if depth > max_depth:
                    child.flatten()
                    depth, flattened = 0, True
                child.metadata_set(L.META_DEPTH, str(depth))
                new = L.Entry(new_uuid, L.IMAGE, L.image_of(new_uuid), '', size, meta)
                self._put(new, image=child, used=0)
        except rbd.Error as e:
            raise _ceph_error(e, 'clone of %s' % uuid, 'VDIClone')
        if flattened:
            self.ctx.log.info('clone %s flattened (depth would exceed %d)' % (new_uuid, max_depth))
            self._gc_image(entry.image)
        return self._volume(new, 0)

    @_mapped()
    def revert(self, uuid, snapshot_uuid):
        rbd = _rbd()
        entry, snap = self._need(uuid), self._need(snapshot_uuid)
        if snap.kind != L.SNAP or snap.image != entry.image or entry.kind != L.IMAGE:
            raise SRError('VDIUnavailable', 'VDI %s is not a snapshot held by the image of '
                          'VDI %s; revert needs a snapshot of that VDI' % (snapshot_uuid, uuid))
        self._check_lease(uuid, 'revert')
        try:
            with self._image(entry.image) as img:
                watchers = self._foreign_watchers(img)
                if watchers:
                    raise SRError('VDIInUse', 'VDI %s is attached (image open by %s)'
                                  % (uuid, ', '.join(w['addr'] for w in watchers)))
                img.rollback_to_snap(snap.snap)
                entry.size = img.size()
                self._put(entry, image=img)
        except rbd.Error as e:
            raise _ceph_error(e, 'revert of %s to %s' % (uuid, snapshot_uuid))

    @_mapped('VDIResize')
    def resize(self, uuid, size):
        rbd = _rbd()
        entry = self._need(uuid)
        if entry.kind != L.IMAGE:
            raise SRError('VDIResize', 'VDI %s is a snapshot (read-only)' % uuid)
        try:
            with self._image(entry.image) as img:
                current = img.size()
                if size < current:
                    raise SRError('VDISize', 'shrinking VDI %s from %d to %d bytes is refused: '
                                  'it would destroy data' % (uuid, current, size))
                if size > current:
                    img.resize(size, allow_shrink=False)
                entry.size = size
                self._put(entry, image=img)
        except rbd.Error as e:
            raise _ceph_error(e, 'resize of %s' % uuid, 'VDIResize')
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
        return size

    # --- export helpers -----------------------------------------------------------------
    @_mapped()
    def extents(self, uuid):
        """[(offset, length)] of the allocated parts of a VDI (fast-diff)."""
        entry = self._need(uuid)
        snap = entry.snap if entry.kind == L.SNAP else None
        with self._image(entry.image, read_only=True, snapshot=snap) as img:
            return self._diff(img, None, entry.size)

    @_mapped()
    def changed_extents(self, uuid, base_uuid):
        """[(offset, length)] that differ between snapshot ``base_uuid`` and ``uuid``."""
        entry, base = self._need(uuid), self._need(base_uuid)
        if base.kind != L.SNAP or base.image != entry.image:
            raise SRError('VDIUnavailable', '%s is not a snapshot of the image of %s'
                          % (base_uuid, uuid))
        snap = entry.snap if entry.kind == L.SNAP else None
        with self._image(entry.image, read_only=True, snapshot=snap) as img:
            return self._diff(img, base.snap, entry.size)

    @staticmethod
    def _diff(img, from_snap, size):
        extents = []

        def cb(offset, length, exists):
            if exists:
                if extents and extents[-1][0] + extents[-1][1] == offset:
                    extents[-1] = (extents[-1][0], extents[-1][1] + length)
                else:
                    extents.append((offset, length))
            return 0
        img.diff_iterate(0, size, from_snap, cb, include_parent=True, whole_object=True)
        return extents

    def _refresh_used(self, uuid):
        """Store the allocated bytes of a VDI in the index (scans read them from there)."""
        try:
            used = sum(length for _, length in self.extents(uuid))
            self._index_set({L.USED_PREFIX + uuid: str(used)})
        except Exception as e:  # best effort: a stale figure is not worth a failed detach
            self.ctx.log.error('refreshing allocation of %s: %s' % (uuid, e))

    # --- single writer: the lease -----------------------------------------------------------
    def _host_id(self):
        host = ''
        try:
            host = self.ctx.host_uuid
        except Exception:
            host = ''
        return host or os.uname()[1]

    def _lease(self, uuid):
        import json
        rados = _rados()
        try:
            return json.loads(self.io.read(L.LEASE_PREFIX + uuid, 65536).decode() or '{}')
        except rados.ObjectNotFound:
            return None
        except ValueError:
            return {}

    def _check_lease(self, uuid, what):
        lease = self._lease(uuid)
        if lease:
            raise SRError('VDIInUse', 'cannot %s VDI %s: it is active read-write on host %s '
                          'since %s' % (what, uuid, lease.get('host'), lease.get('since')))

    @_mapped('VDIUnavailable')
    def activate(self, uuid, writable):
        if not writable:
            return
        import json
        from drivers.ceph import datapath
        rados = _rados()
        entry = self._need(uuid)
        if entry.kind == L.SNAP:
            return
        host = self._host_id()
        record = datapath.load_record(self.ctx.state_dir, uuid) or {}
        lease = {'host': host, 'since': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                 'clients': record.get('clients', []), 'datapath': record.get('kind', '')}
        try:
            with rados.WriteOpCtx() as op:
                op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                op.write_full(json.dumps(lease, sort_keys=True).encode())
                self.io.operate_write_op(op, L.LEASE_PREFIX + uuid)
        except rados.ObjectExists:
            held = self._lease(uuid) or {}
            if held.get('host') == host:
                return  # this host already holds it (idempotent re-activation)
            raise SRError('VDIInUse', 'VDI %s is active read-write on host %s since %s; a VDI '
                          'is writable on one host at a time. If that host is dead, fence it '
                          '(docs/ceph.md: "Fencing a dead host")'
                          % (uuid, held.get('host'), held.get('since')))
        except rados.Error as e:
            raise _ceph_error(e, 'taking the write lease of %s' % uuid, 'VDIUnavailable')

    @_mapped('VDIUnavailable')
    def deactivate(self, uuid):
        import json
        rados = _rados()
        lease = self._lease(uuid)
        if lease is None:
            return
        if lease.get('host') != self._host_id():
            self.ctx.log.error('deactivate %s: lease held by %s, not this host; left alone'
                               % (uuid, lease.get('host')))
            return
        body = json.dumps(lease, sort_keys=True).encode()
        try:
            with rados.WriteOpCtx() as op:
                op.cmpext(body, 0)   # remove only the lease we read (a fence may have replaced it)
                op.remove()
                self.io.operate_write_op(op, L.LEASE_PREFIX + uuid)
        except rados.Error as e:
            raise _ceph_error(e, 'releasing the write lease of %s' % uuid, 'VDIUnavailable')

    # --- datapath ---------------------------------------------------------------------------
    def _foreign_watchers(self, img):
        me = self.cluster.rados.get_instance_id()
        return [w for w in img.watchers_list() if int(w.get('id', -1)) != me]

    @_mapped('VDIUnavailable')
    def attach(self, uuid, writable):
        from drivers.ceph import datapath
        rbd = _rbd()
        entry = self._need(uuid)
        writable = writable and entry.kind == L.IMAGE
        existing = datapath.load_record(self.ctx.state_dir, uuid)
        if existing and os.path.exists(datapath.device_of(existing) or ''):
            return datapath.device_of(existing)
        kind = datapath.choose(self.config.get('datapath'))
        image, snap, temp = entry.image, entry.snap or None, ''
        if kind == 'fuse' and snap:
            # rbd-fuse opens heads only: expose the snapshot through a COW clone
            temp = L.attach_clone_name(entry.uuid, self._host_id()[:8])
            try:
                with self._image(entry.image) as img:
                    if not img.is_protected_snap(snap):
                        img.protect_snap(snap)
                try:
                    rbd.RBD().clone(self.io, entry.image, snap, self.io, temp, features=FEATURES)
                except rbd.ImageExists:
                    pass
            except rbd.Error as e:
                raise _ceph_error(e, 'preparing snapshot %s for attach' % uuid, 'VDIUnavailable')
            image, snap = temp, None
        with self._image(image, read_only=True) as img:
            before = set(w['addr'] for w in img.watchers_list())
            if kind == 'fuse':
                record = datapath.fuse_attach(self.ctx.state_dir, self.config, self.pool,
                                              self.namespace, image, writable)
            elif kind == 'nbd':
                record = datapath.nbd_attach(self.ctx.state_dir, self.config, self.pool,
                                             self.namespace, image, snap, writable)
            else:
                record = datapath.krbd_attach(self.config, self.pool, self.namespace, image,
                                              snap, writable, _v1_addrs(self.config))
            # the datapath's own librbd/krbd client: what a fence must blocklist
            deadline = time.time() + 5
            clients = []
            while time.time() < deadline:
                clients = [w for w in img.watchers_list() if w['addr'] not in before
                           and int(w['id']) != self.cluster.rados.get_instance_id()]
                if clients:
                    break
                time.sleep(0.05)
        record.update(temp_clone=temp, writable=writable, vdi=uuid,
                      clients=[{'id': int(w['id']), 'addr': w['addr']} for w in clients])
        datapath.save_record(self.ctx.state_dir, uuid, record)
        return datapath.device_of(record)

    @_mapped('VDIUnavailable')
    def detach(self, uuid):
        from drivers.ceph import datapath
        record = datapath.load_record(self.ctx.state_dir, uuid)
        if record is None:
            return
        datapath.detach(record)
        datapath.drop_record(self.ctx.state_dir, uuid)
        temp = record.get('temp_clone')
        if temp:
            self._remove_image(temp)  # and collects a snapshot deleted while attached
        elif record.get('writable'):
            self._refresh_used(uuid)


def _ceph_error(e, doing, name='SMGeneral'):
    from drivers.ceph.connection import ceph_error
    return ceph_error(e, doing, name)


def _v1_addrs(config):
    """Monitor addresses in the krbd form (ip:6789,...)."""
    out = []
    for part in (config.get('monitors') or '').replace('[', ',').replace(']', ',').split(','):
        part = part.strip()
        if not part or part.startswith('v2:'):
            continue
        if part.startswith('v1:'):
            part = part[3:]
        if ':' not in part:
            part += ':6789'
        out.append(part)
    return ','.join(out)
