"""vdi_attach / vdi_detach of the RBD driver (the host mechanics are in datapath.py,
rbd_nbd.py and krbd.py).

A read-write attach is refused (VDIInUse, 24) while another host holds the
VDI's write lease: a device that could write under another host's writer must
never exist. Read-only attaches are always allowed.

A kernel datapath (nbd, krbd) outlives the driver process, so it is recorded
before it exists: ``dp.<vdi>.json`` is written in state ``mapping`` (the attaching
process, the attach's token) before the map, and completed after it. The next
attach or detach of the VDI on this host, and sr_scan on the master for all of its
VDIs, clean what is left over:

* a record whose device no longer serves it (its rbd-nbd daemon was killed);
* a ``mapping`` record of a dead process (a vdi_attach killed around the map);
* a complete record of a dead process that the framework never marked attached
  (killed between the map and its reply): xapi believes the attach failed and
  will never detach it.

Only the device(s) the record's token names are unmapped, never another one.
"""

import os
import time

from framework import crash
from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, rbd_module
from drivers.ceph.index import is_dead, process_record

KERNEL = ('nbd', 'krbd')

RELEASE_TIMEOUT = 40   # seconds detach waits for the datapath's watch to go: longer than
                       # the OSD's watch timeout (30 s), so even an unrecognised one does


class Attachments(object):
    """The block devices of this host's attachments (``ctx``: SRContext; ``images``:
    Images; ``watchers``: Watchers, to record a datapath daemon's clients and evict
    them once dead). The VDI's entry and its lease are the caller's (driver.py).
    Public: ``attach(entry, writable)``, ``detach(uuid)``, ``await_release(record)``,
    ``device_alive(uuid, path)``, ``clean()``, ``follow_size(uuid, size)``."""

    def __init__(self, ctx, images, watchers):
        self.ctx = ctx
        self.images = images
        self.watchers = watchers

    def attach(self, entry, writable):
        """The device of VDI ``entry`` on this host (made, or the live one already
        recorded); ``writable`` only for an image, not a snapshot."""
        from drivers.ceph import datapath
        rbd = rbd_module()
        uuid = entry.uuid
        existing = datapath.load_record(self.ctx.state_dir, uuid)
        if existing and datapath.alive(existing):
            return datapath.device_of(existing)
        if existing and existing.get('kind') in KERNEL:
            self._drop_datapath(uuid, existing, 'its device no longer served it')
        kind = datapath.choose(self.ctx.config.get('datapath'))
        image, snap, temp = entry.image, entry.snap or None, ''
        if kind == 'fuse' and snap:
            # rbd-fuse opens heads only: expose the snapshot through a COW clone
            temp = L.attach_clone_name(entry.uuid, self.ctx.host_id[:8])
            try:
                with self.images.open(entry.image) as img:
                    if not img.is_protected_snap(snap):
                        img.protect_snap(snap)
                try:
                    rbd.RBD().clone(self.ctx.io, entry.image, snap, self.ctx.io, temp,
                                    features=L.FEATURES)
                except rbd.ImageExists:
                    pass
            except rbd.Error as e:
                raise ceph_error(e, 'preparing snapshot %s for attach' % uuid, 'VDIUnavailable')
            image, snap = temp, None
        with self.images.open(image, read_only=True) as img:
            before = set(w['addr'] for w in img.watchers_list())
            if kind == 'fuse':
                record = datapath.fuse_attach(self.ctx.state_dir, self.ctx.config,
                                              self.ctx.pool, self.ctx.namespace, image,
                                              writable)
            else:
                record = self._map_kernel(kind, uuid, image, snap, writable)
            # the datapath's own librbd/krbd client: what a fence must blocklist
            deadline = time.time() + 5
            clients = []
            while time.time() < deadline:
                clients = [w for w in img.watchers_list() if w['addr'] not in before
                           and int(w['id']) != self.ctx.cluster.rados.get_instance_id()]
                if clients:
                    break
                time.sleep(0.05)
        record.update(temp_clone=temp, writable=writable, vdi=uuid,
                      clients=[{'id': int(w['id']), 'addr': w['addr']} for w in clients])
        if record.get('pid') and record['clients']:
            self.watchers.register_datapath(record['pid'], uuid, record['clients'])
        datapath.save_record(self.ctx.state_dir, uuid, record)
        if kind in KERNEL:
            crash.point('rbd.attach.after-record')
        self.ctx.log.info('VDI %s attached %s through datapath %s: %s'
                          % (uuid, 'read-write' if writable else 'read-only', kind,
                             datapath.device_of(record)))
        return datapath.device_of(record)

    def _map_kernel(self, kind, uuid, image, snap, writable):
        """Map through rbd-nbd or krbd, recorded before the device exists."""
        import uuid as uuidlib
        from drivers.ceph import datapath, krbd, rbd_nbd
        intent = {'kind': kind, 'state': 'mapping', 'vdi': uuid, 'image': image,
                  'token': 'srkit-%s' % uuidlib.uuid4().hex, 'process': process_record()}
        datapath.save_record(self.ctx.state_dir, uuid, intent)
        try:
            if kind == 'nbd':
                record = rbd_nbd.map_image(self.ctx.state_dir, self.ctx.config, self.ctx.pool,
                                           self.ctx.namespace, image, snap, writable,
                                           intent['token'])
            elif kind == 'krbd':
                record = krbd.map_image(self.ctx.cluster.rados, self.ctx.config, self.ctx.pool,
                                        self.ctx.namespace, image, snap, writable,
                                        intent['token'])
            else:
                from framework.errors import SRError
                raise SRError('VDIUnavailable', 'unknown datapath %r' % kind)
        except Exception:
            self._drop_datapath(uuid, intent, 'its map failed')
            raise
        crash.point('rbd.attach.after-map')
        record['process'] = intent['process']
        return record

    def device_alive(self, uuid, path):
        """Whether ``path``, which an earlier attach returned, still serves the VDI."""
        from drivers.ceph import datapath
        record = datapath.load_record(self.ctx.state_dir, uuid)
        return bool(record) and datapath.device_of(record) == path and datapath.alive(record)

    def _drop_datapath(self, uuid, record, why=''):
        """Undo the attachment ``record`` describes and forget it."""
        from drivers.ceph import datapath
        datapath.detach(record)
        if record.get('kind') in KERNEL:
            crash.point('rbd.detach.after-unmap')
        datapath.drop_record(self.ctx.state_dir, uuid)
        self.ctx.log.info('VDI %s detached from datapath %s%s%s'
                          % (uuid, record.get('kind'),
                             ' (%s)' % datapath.device_of(record)
                             if datapath.device_of(record) else '',
                             ': %s' % why if why else ''))

    def clean(self):
        """sr_scan: undo the kernel datapaths of this host that killed commands or
        daemons left behind (see the module doc); attachments in use stay."""
        from drivers.ceph import datapath
        from framework.markers import attached_in
        for uuid, record in sorted(datapath.records(self.ctx.state_dir).items()):
            if record.get('kind') not in KERNEL:
                continue
            dead = is_dead(record.get('process') or {})
            if dead and record.get('state') == 'mapping':
                why = 'left by a killed vdi_attach'
            elif dead and not attached_in(self.ctx.state_dir, uuid):
                why = 'left by a vdi_attach killed before its reply'
            elif record.get('state') != 'mapping' and not datapath.alive(record):
                why = 'its device no longer served it'
            else:
                continue
            try:
                self._drop_datapath(uuid, record, why)
            except Exception as e:   # the next scan tries again
                self.ctx.log.error('cleaning the datapath of VDI %s: %s' % (uuid, e))

    def detach(self, uuid):
        """Undo and forget this host's attachment of VDI ``uuid``; its record (what
        is left to do: a temporary clone to remove, clients to wait out), or None
        when there was none."""
        from drivers.ceph import datapath
        record = datapath.load_record(self.ctx.state_dir, uuid)
        if record is None:
            return None
        self._drop_datapath(uuid, record)
        return record

    def await_release(self, record):
        """Return only once the datapath's clients no longer watch the image: a
        vdi_delete right after a detach must not find them (a VM shut down and its
        disk deleted at once). A daemon the detach had to kill (it did not exit in
        time: a loaded host) leaves its watch until the OSD times it out; it is a
        dead client of this host, blocklisted at once (watchers.py)."""
        from framework.errors import SRError
        ids = set(int(c['id']) for c in record.get('clients') or ())
        image = record.get('image')
        if not ids or not image:
            return
        deadline = time.time() + RELEASE_TIMEOUT
        while True:
            try:
                with self.images.open(image, read_only=True) as img:
                    left = [w for w in img.watchers_list() if int(w['id']) in ids]
            except SRError:
                return   # the image is gone
            if not left:
                return
            if time.time() > deadline:
                self.ctx.log.error('detach of %s: datapath client(s) %s still watch the '
                                   'image after %d s' % (image, ', '.join(
                                       w['addr'] for w in left), RELEASE_TIMEOUT))
                return
            self.watchers.evict_dead(image)
            time.sleep(0.1)

    def follow_size(self, uuid, size):
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
