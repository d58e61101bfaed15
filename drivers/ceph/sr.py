"""The SR itself: its namespace and ``srkit.sr`` object in the pool (create, delete),
this host's files for it, the pool's statistics, and probing a pool for SRs."""

import os
import time

from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, rados_module, rbd_module


class SR(object):
    """The SR as a whole (``ctx``: SRContext; ``index``: Index, to check the SR is
    there; ``reclaim``: Reclaim, to purge what images are left at delete). Public:
    ``create()``, ``delete()``, ``check()``, ``drop_host_files()``, ``stats()``,
    ``probe()``."""

    def __init__(self, ctx, index, reclaim):
        self.ctx = ctx
        self.index = index
        self.reclaim = reclaim

    def create(self):
        """The SR's namespace (unless device-config names one) and its object."""
        from drivers.ceph import datapath
        datapath.check_tools(self.ctx.config.get('datapath'))   # this host can attach its VDIs
        rbd, rados = rbd_module(), rados_module()
        root = self.ctx.root_io()
        try:
            if self.ctx.namespace and not rbd.RBD().namespace_exists(root, self.ctx.namespace):
                rbd.RBD().namespace_create(root, self.ctx.namespace)
            with rados.WriteOpCtx() as op:
                op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                keys = (L.SR_FORMAT_KEY, L.SR_UUID_KEY, L.SR_CREATED_KEY)
                vals = (L.FORMAT, self.ctx.sr_uuid,
                        time.strftime('%Y%m%dT%H:%M:%SZ', time.gmtime()))
                self.ctx.io.set_omap(op, keys, tuple(v.encode() for v in vals))
                self.ctx.io.operate_write_op(op, L.SR_OBJECT)
        except rados.ObjectExists:
            raise SRError('SRExists', 'pool %s namespace %s already holds an SR'
                          % (self.ctx.pool, self.ctx.namespace))
        except (rados.Error, rbd.Error) as e:
            raise ceph_error(e, 'creating SR in %s/%s' % (self.ctx.pool, self.ctx.namespace))

    def delete(self):
        """Purge the images left (retained ones: the framework checked no VDI is),
        the leases and the SR object, the namespace the SR made, this host's files."""
        rbd, rados = rbd_module(), rados_module()
        self.check()
        # only retained images (no VDI) can be left: the framework checked list() is empty
        for _ in range(3):
            names = [n for n in rbd.RBD().list(self.ctx.io)]
            if not names:
                break
            for name in names:
                self.reclaim.purge_image(name)
        try:
            for obj in list(self.ctx.io.list_objects()):
                if obj.key.startswith(L.LEASE_PREFIX) or obj.key == L.SR_OBJECT:
                    self.ctx.io.remove_object(obj.key)
            root = self.ctx.root_io()
            if self.ctx.namespace and not self.ctx.config.get('namespace'):
                rbd.RBD().namespace_remove(root, self.ctx.namespace)
        except (rados.Error, rbd.Error) as e:
            raise ceph_error(e, 'deleting SR %s' % self.ctx.sr_uuid)

        self.drop_host_files()

    def check(self):
        """SRUnavailable unless the SR object is there."""
        self.index.read([L.SR_UUID_KEY])

    def drop_host_files(self):
        """The per-host files holding credentials (credentials.py) and client records
        (watchers.py)."""
        from drivers.ceph import credentials
        credentials.drop_client_files(self.ctx.state_dir)
        clients = os.path.join(self.ctx.state_dir, 'clients')
        if os.path.isdir(clients):
            for name in os.listdir(clients):
                try:
                    os.unlink(os.path.join(clients, name))
                except OSError:
                    pass
            try:
                os.rmdir(clients)
            except OSError:
                pass

    def stats(self):
        """(size, used) of the pool from the cluster's own statistics (needs a mgr)."""
        import json
        rados = rados_module()
        cmd = json.dumps({'prefix': 'df', 'format': 'json'})
        try:
            ret, out, err = self.ctx.cluster.rados.mon_command(cmd, b'', timeout=15)
        except rados.Error as e:
            raise ceph_error(e, 'ceph df')
        if ret == 0:
            df = json.loads(out.decode('utf-8'))
            for pool in df.get('pools', ()):
                if pool.get('name') == (self.ctx.config.get('data_pool') or self.ctx.pool):
                    stats = pool.get('stats', {})
                    used = int(stats.get('stored', stats.get('bytes_used', 0)))
                    avail = int(stats.get('max_avail', 0))
                    return used + avail, used
        # no permission for df: the whole cluster's raw figures
        stats = self.ctx.cluster.rados.get_cluster_stats()
        return stats['kb'] * 1024, stats['kb_used'] * 1024

    def probe(self):
        """SRs in the pool: every namespace holding an SR object (plus the default one)."""
        rbd, rados = rbd_module(), rados_module()
        root = self.ctx.root_io()
        found = []
        try:
            spaces = [''] + sorted(rbd.RBD().namespace_list(root))
        except rbd.Error as e:
            raise ceph_error(e, 'listing namespaces of pool %s' % self.ctx.pool)
        for ns in spaces:
            io = self.ctx.cluster.ioctx(self.ctx.pool, ns)
            try:
                with rados.ReadOpCtx() as op:
                    it, _ = io.get_omap_vals_by_keys(op, (L.SR_UUID_KEY,))
                    io.operate_read_op(op, L.SR_OBJECT)
                    vals = dict(it)
            except rados.ObjectNotFound:
                continue
            uuid = vals.get(L.SR_UUID_KEY, b'').decode() or ns
            found.append({'uuid': uuid, 'name_label': 'rbd %s/%s' % (self.ctx.pool, ns or '-'),
                          'aggregate': '%s/%s' % (self.ctx.pool, ns)})
        if self.ctx.pool.startswith(L.LEGACY_POOL_PREFIX) or not found:
            for name in self.ctx.cluster.rados.list_pools():
                if name.startswith(L.LEGACY_POOL_PREFIX):
                    found.append({'uuid': name[len(L.LEGACY_POOL_PREFIX):],
                                  'name_label': 'RBDSR v1 pool %s' % name,
                                  'aggregate': name})
        return found
