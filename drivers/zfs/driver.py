"""The zfsvol driver: SR type ``zfsvol``, one dataset per SR, one zvol per VDI.

Snapshots are ZFS snapshots (read-only VDIs), clones are ``zfs clone``s, VDI
metadata is the ``srkit:meta`` user property set *at creation* (``-o``), so a VDI
never exists without it. Deleting a VDI that something still depends on retires it
(deferred deletion, see layout.py and repair.py); nothing is promoted, so snapshot
VDIs never move and no clone is ever lost. Layout and names: layout.py; admin
view: docs/zfs.md.
"""

import os
import time

from framework import crash
from framework import meta as m
from framework.driver import Driver, Volume
from framework.errors import SRError
from drivers.zfs import device
from drivers.zfs import layout as L
from drivers.zfs import options as O
from drivers.zfs import pools
from drivers.zfs import repair
from drivers.zfs.process import ZfsError


def _mutates(fn):
    """Rows read before a mutating primitive are stale after it (one command per process:
    xapi's get -> primitive -> get is served from memory in between)."""
    def primitive(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        finally:
            self._seen.clear()
            self._clean = None
    primitive.__name__ = fn.__name__
    primitive.__doc__ = fn.__doc__
    return primitive


def _random():
    return ''.join('%02x' % b for b in bytearray(os.urandom(8)))


class ZFSVolDriver(Driver):
    name = 'ZFSVol'
    description = ('ZFS: one dataset per SR, one zvol per VDI, native snapshots, '
                   'clones and rollback')
    driver_version = '1.0.0'
    options = O.OPTIONS
    thin_provisioning = True
    resize_online = True
    max_vdi_size = 64 * 1024 ** 4
    size_granularity = 512

    def __init__(self, sr_uuid, config, context):
        Driver.__init__(self, sr_uuid, config, context)
        O.check(config)
        self._zfs = None
        self._seen = {}
        self._clean = None      # rows collect_garbage left clean: sr_scan's list() reuses them
        self.blocksize = config.get('volblocksize') or 16384
        self.thick = config.get('provisioning') == 'thick'

    @property
    def zfs(self):
        if self._zfs is None:
            from drivers.zfs import cli, lzc
            api = self.config.get('api') or 'auto'
            use = api in ('auto', 'pyzfs') and lzc.installed()
            if api == 'pyzfs' and not use:
                raise SRError('SRUnavailable', 'api=pyzfs but libzfs_core is not installed: '
                              'install python3-pyzfs, or use api=auto')
            self._zfs = lzc.Lzc() if use else cli.Cli()
        return self._zfs

    @property
    def sr_ds(self):
        return L.sr_dataset(self.config['pool'], self.sr_uuid)

    def _zvol(self, uuid):
        return L.zvol(self.sr_ds, uuid)

    # --- rows and volumes --------------------------------------------------------------
    def _volume(self, row):
        uuid = row.vdi_uuid()
        meta = L.decode_meta(uuid, row.meta_text)
        snapshot = row.type == 'snapshot'
        if meta is None:
            parent = L.leaf(row.dataset)
            meta = m.new(is_snapshot=snapshot, read_only=snapshot,
                         snapshot_of=parent if snapshot and L.is_uuid(parent) else '')
        return Volume(uuid, row.volsize, row.used, meta,
                      read_only=snapshot or m.flag(meta, m.READ_ONLY))

    def _rows(self):
        try:
            return self.zfs.list_tree(self.sr_ds)
        except ZfsError as e:
            if e.missing:
                raise SRError('SRUnavailable', 'dataset %s does not exist (pool not imported, '
                              'or the SR was destroyed)' % self.sr_ds)
            raise e.fault('SRScan', 'listing %s' % self.sr_ds)

    def _find(self, uuid, fresh=False):
        """The Row of VDI ``uuid`` (zvol or snapshot), or None."""
        if fresh or uuid not in self._seen:
            self._seen[uuid] = self._lookup(uuid)
        return self._seen[uuid]

    def _lookup(self, uuid):
        row = self.zfs.row(self._zvol(uuid))
        if row is not None:
            return row if row.type == 'volume' else None
        try:
            rows = self.zfs.list_tree(self.sr_ds, types='snapshot')
        except ZfsError as e:
            if e.missing:
                raise SRError('SRUnavailable', 'dataset %s does not exist' % self.sr_ds)
            raise
        for r in rows:
            if r.leaf == uuid:
                return r
        return None

    def _need(self, uuid, fault='VDIMissing', fresh=False):
        row = self._find(uuid, fresh)
        if row is None:
            raise SRError(fault, 'no VDI %s in SR %s' % (uuid, self.sr_uuid))
        return row

    def _round(self, size):
        grain = self.blocksize
        return max(grain, (size + grain - 1) // grain * grain)

    # --- SR ----------------------------------------------------------------------------------
    def sr_create(self, physical_size):
        created = pools.ensure_pool(self.zfs, self.config, self.sr_uuid)
        pools.check_compression(self.zfs, self.config)
        parent = self.config['pool']
        if '/' in parent and not self.zfs.exists(parent):
            raise SRError('SRUnavailable', 'parent dataset %s does not exist' % parent)
        existing = self.zfs.row(self.sr_ds)
        if existing is not None:
            raise SRError('SRExists', 'dataset %s already exists' % self.sr_ds)
        props = {L.SR_PROP: self.sr_uuid, 'mountpoint': 'none'}
        if self.config.get('compression'):
            props['compression'] = self.config['compression']
        try:
            self.zfs.create_filesystem(self.sr_ds, props)
        except ZfsError as e:
            raise e.fault('SRUnavailable', 'creating %s' % self.sr_ds)
        if created:
            self.ctx.log.info('created pool %s on %s' % (pools.pool_of(parent),
                                                           self.config.get('devices')))

    def sr_delete(self):
        rows = repair.run(self.zfs, self.sr_ds, self._rows(), self.ctx.log)
        left = [r.name for r in rows if r.name != self.sr_ds]
        if left:
            raise SRError('SRNotEmpty', 'dataset %s still holds %s' % (self.sr_ds,
                                                                       ', '.join(left)))
        self.zfs.destroy(self.sr_ds)
        pool = pools.pool_of(self.config['pool'])
        mark = self.zfs.get(pool, [L.POOL_PROP]).get(L.POOL_PROP)
        if mark == self.sr_uuid and not [n for n, _, _, _ in self.zfs.filesystems(pool)
                                         if n != pool]:
            self.ctx.log.info('destroying pool %s, created by this SR' % pool)
            self.zfs.destroy_pool(pool)

    def sr_attach(self):
        if self.zfs.row(self.sr_ds) is None:
            pools.ensure_pool(self.zfs, dict(self.config, devices=''), self.sr_uuid)
            if self.zfs.row(self.sr_ds) is None:
                raise SRError('SRUnavailable', 'dataset %s does not exist' % self.sr_ds)

    def sr_stats(self):
        got = self.zfs.get(self.sr_ds, ['used', 'available'])
        used, avail = int(got.get('used', 0)), int(got.get('available', 0))
        return used + avail, used

    def probe(self):
        return pools.probe(self.zfs, self.config)

    # --- VDIs -------------------------------------------------------------------------------
    def collect_garbage(self):
        self._clean = repair.run(self.zfs, self.sr_ds, self._rows(), self.ctx.log)

    def list(self):
        rows = self._clean if self._clean is not None else self._rows()
        rows = repair.run(self.zfs, self.sr_ds, rows, self.ctx.log, collect=False)
        found = {}
        for row in rows:
            uuid = row.vdi_uuid()
            if uuid and row.dataset != self.sr_ds:
                found[uuid] = self._volume(row)
        return found

    def get(self, uuid):
        row = self._find(uuid)
        return None if row is None else self._volume(row)

    @_mutates
    def create(self, uuid, size, meta):
        size = self._round(size)
        props = {L.META_PROP: L.encode_meta(uuid, meta), 'volblocksize': self.blocksize}
        try:
            self.zfs.create_volume(self._zvol(uuid), size, props, sparse=not self.thick)
        except ZfsError as e:
            if e.exists:
                raise SRError('VDIExists', 'zvol %s already exists' % self._zvol(uuid))
            raise e.fault('VDICreate', 'creating %s' % self._zvol(uuid))
        crash.point('zfsvol.create.after-create')
        return self._volume(self._need(uuid, fresh=True))

    @_mutates
    def set_meta(self, uuid, meta):
        row = self._need(uuid)
        self.zfs.set(row.name, {L.META_PROP: L.encode_meta(uuid, meta)})
        crash.point('zfsvol.set_meta.after-set')

    @_mutates
    def destroy(self, uuid):
        row = self._need(uuid)
        try:
            if row.type == 'snapshot':
                if row.clones:
                    # clones hang from it: keep the snapshot under a name that is no VDI
                    self.zfs.rename(row.name, L.snap(row.dataset, L.RETIRED + uuid))
                    crash.point('zfsvol.destroy.after-retire')
                else:
                    self.zfs.destroy(row.name)
                    crash.point('zfsvol.destroy.after-destroy')
            else:
                snaps = self.zfs.list_tree(row.name, types='snapshot', depth=1)
                if snaps:
                    self.zfs.rename(row.name, L.zvol(self.sr_ds, L.RETIRED + _random()))
                    crash.point('zfsvol.destroy.after-retire')
                else:
                    self.zfs.destroy(row.name)
                    crash.point('zfsvol.destroy.after-destroy')
        except ZfsError as e:
            raise e.fault('VDIDelete', 'deleting VDI %s' % uuid)
        repair.run(self.zfs, self.sr_ds, self._rows(), self.ctx.log)

    # --- snapshots, clones, revert --------------------------------------------------------
    @_mutates
    def snapshot(self, uuid, new_uuid, meta):
        row = self._need(uuid)
        if row.type != 'volume':
            raise SRError('VDISnapshot', 'VDI %s is itself a snapshot; clone it first' % uuid)
        name = L.snap(row.name, new_uuid)
        try:
            self.zfs.snapshot(name, {L.META_PROP: L.encode_meta(new_uuid, meta)})
        except ZfsError as e:
            raise e.fault('VDISnapshot', 'snapshot of %s' % uuid)
        crash.point('zfsvol.snapshot.after-snapshot')
        # the source row already says what a fresh snapshot holds: no second listing
        return Volume(new_uuid, row.volsize, 0, meta, read_only=True)

    @_mutates
    def clone(self, uuid, new_uuid, meta):
        row = self._need(uuid)
        origin = row.name
        try:
            if row.type == 'volume':
                origin = L.snap(row.name, L.BASE + new_uuid)
                self.zfs.snapshot(origin, {})
                crash.point('zfsvol.clone.after-base-snapshot')
            props = {L.META_PROP: L.encode_meta(new_uuid, meta)}
            if self.thick:
                props['refreservation'] = 'auto'
            self.zfs.clone(origin, self._zvol(new_uuid), props)
        except ZfsError as e:
            raise e.fault('VDIClone', 'clone of %s' % uuid)
        crash.point('zfsvol.clone.after-clone')
        return self._volume(self._need(new_uuid, fresh=True))

    @_mutates
    def revert(self, uuid, snapshot_uuid):
        row, snap = self._need(uuid), self._need(snapshot_uuid)
        if row.type != 'volume' or snap.type != 'snapshot':
            raise SRError('VDIUnavailable', 'revert needs a VDI and one of its snapshots '
                          '(%s, %s)' % (uuid, snapshot_uuid))
        try:
            if snap.dataset == row.name and self._latest(row.name) == snap.name:
                self.zfs.rollback(snap.name)
                crash.point('zfsvol.revert.after-rollback')
                return
            # ZFS rolls back only to the newest snapshot, destroying newer ones (-r);
            # xapi still lists those, so switch the VDI to a clone of the snapshot instead
            scratch = L.zvol(self.sr_ds, L.REVERT + uuid)
            self.zfs.destroy(scratch)   # a leftover of an interrupted revert
            props = {L.META_PROP: row.meta_text}
            if self.thick:
                props['refreservation'] = 'auto'
            had_node = row.name in device.nodes()
            self.zfs.clone(snap.name, scratch, props)
            crash.point('zfsvol.revert.after-clone')
            retired = L.zvol(self.sr_ds, L.RETIRED + _random())
            self.zfs.rename(row.name, retired)
            crash.point('zfsvol.revert.after-retire')
            self.zfs.rename(scratch, row.name)
            crash.point('zfsvol.revert.after-rename')
            # until ZFS has renamed the nodes too, the node answering to <uuid> is the old one
            if had_node and not device.wait_renamed(retired, scratch, self._udev_timeout()):
                self.ctx.log.error('revert of %s: zd nodes not renamed within %d s'
                                   % (uuid, self._udev_timeout()))
        except ZfsError as e:
            raise e.fault('SMGeneral', 'revert of %s to %s' % (uuid, snapshot_uuid))
        repair.run(self.zfs, self.sr_ds, self._rows(), self.ctx.log)

    def _latest(self, dataset):
        snaps = self.zfs.list_tree(dataset, types='snapshot', depth=1)
        return snaps[-1].name if snaps else None

    @_mutates
    def resize(self, uuid, size):
        row = self._need(uuid)
        if row.type != 'volume':
            raise SRError('VDIResize', 'VDI %s is a snapshot (read-only)' % uuid)
        size = self._round(size)
        if size < row.volsize:
            raise SRError('VDISize', 'shrinking VDI %s from %d to %d bytes would lose data'
                          % (uuid, row.volsize, size))
        if size > row.volsize:
            try:
                # for a thick zvol libzfs raises refreservation in the same call
                self.zfs.set(row.name, {'volsize': size})
            except ZfsError as e:
                raise e.fault('VDIResize', 'resize of %s' % uuid)
            crash.point('zfsvol.resize.after-volsize')
        return size

    # --- allocation and changes --------------------------------------------------------------
    def _send(self, row, base=None):
        """(written, freed) ranges of a send of ``row`` (from ``base``), or its
        allocated ranges without ``base``."""
        from drivers.zfs import stream
        temp = None
        target = row.name
        if row.type == 'volume':
            temp = target = L.snap(row.name, L.temp_name(time.time(), _random()))
            self.zfs.snapshot(temp, {})
        try:
            f, finish = self.zfs.send(target, base)
            try:
                if base is None:
                    return stream.allocated(f, row.volsize)
                return stream.split(f, row.volsize)
            finally:
                finish()
        except ZfsError as e:
            raise e.fault('VDIUnavailable', 'reading the blocks of %s' % row.name)
        finally:
            if temp:
                self.zfs.destroy(temp)

    def extents(self, uuid):
        """[(offset, length)] of the allocated blocks of a VDI."""
        return self._send(self._need(uuid))

    def changed_extents(self, uuid, base_uuid):
        """[(offset, length)] that differ from snapshot ``base_uuid``: blocks written
        since, and freed ranges that held data in ``base_uuid`` (they read as zeros now)."""
        from drivers.zfs import stream
        row, base = self._need(uuid), self._need(base_uuid)
        if base.type != 'snapshot':
            raise SRError('VDIUnavailable', '%s is not a snapshot' % base_uuid)
        written, freed = self._send(row, base.name)
        if freed:
            freed = stream.intersect(freed, self._send(base))
        return stream.merge(written + freed, row.volsize)

    def data_destroy(self, uuid):
        from drivers.zfs import cbt
        cbt.data_destroy(self, uuid)

    # --- datapath -----------------------------------------------------------------------------
    def attach(self, uuid, writable):
        row = self._need(uuid)
        if row.type == 'snapshot':
            # snapshot device nodes exist only while snapdev=visible on their zvol
            self.zfs.set(row.dataset, {'snapdev': 'visible'})
        path = '/dev/zvol/' + row.name
        timeout = self._udev_timeout()
        deadline = time.time() + timeout
        while not device.serves(path, row.name, row.volsize):
            if time.time() > deadline:
                raise SRError('VDIUnavailable', 'device link %s did not appear within %d s '
                              '(is udev running? see udevadm monitor)' % (path, timeout))
            time.sleep(0.1)
        return path

    def _udev_timeout(self):
        return self.config.get('udev_timeout') or 30

    def detach(self, uuid):
        # a zvol's device exists as long as the zvol: nothing to undo
        return None
