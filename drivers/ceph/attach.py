"""vdi_attach / vdi_detach of the RBD driver (the host mechanics are in datapath.py).

A read-write attach is refused (VDIInUse, 24) while another host holds the
VDI's write lease: a device that could write under another host's writer must
never exist. Read-only attaches are always allowed.
"""

import os
import time

from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, mapped, rbd_module

FEATURES = 1 | 4 | 8 | 16 | 32   # layering | exclusive-lock | object-map | fast-diff | deep-flatten


class AttachMixin(object):
    @mapped('VDIUnavailable')
    def attach(self, uuid, writable):
        from drivers.ceph import datapath
        rbd = rbd_module()
        entry = self._need(uuid)
        writable = writable and entry.kind == L.IMAGE
        if writable:
            self._check_lease(uuid, 'attach read-write', allow_host=self.ctx.host_id)
        existing = datapath.load_record(self.ctx.state_dir, uuid)
        if existing and os.path.exists(datapath.device_of(existing) or ''):
            return datapath.device_of(existing)
        kind = datapath.choose(self.config.get('datapath'))
        image, snap, temp = entry.image, entry.snap or None, ''
        if kind == 'fuse' and snap:
            # rbd-fuse opens heads only: expose the snapshot through a COW clone
            temp = L.attach_clone_name(entry.uuid, self.ctx.host_id[:8])
            try:
                with self._image(entry.image) as img:
                    if not img.is_protected_snap(snap):
                        img.protect_snap(snap)
                try:
                    rbd.RBD().clone(self.io, entry.image, snap, self.io, temp, features=FEATURES)
                except rbd.ImageExists:
                    pass
            except rbd.Error as e:
                raise ceph_error(e, 'preparing snapshot %s for attach' % uuid, 'VDIUnavailable')
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

    @mapped('VDIUnavailable')
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

    def _refresh_used(self, uuid):
        """Store the allocated bytes of a VDI in the index (scans read them from there)."""
        try:
            used = sum(length for _, length in self.extents(uuid))
            self._index_set({L.USED_PREFIX + uuid: str(used)})
        except Exception as e:  # best effort: a stale figure is not worth a failed detach
            self.ctx.log.error('refreshing allocation of %s: %s' % (uuid, e))


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
