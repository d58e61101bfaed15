"""SR-level primitives of the RBD driver: create, delete, attach/detach on a host,
statistics and probe."""

import os
import time

from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, mapped, rados_module, rbd_module


class SRMixin(object):
    @mapped()
    def sr_create(self, physical_size):
        from drivers.ceph import datapath
        datapath.check_tools(self.config.get('datapath'))   # this host can attach its VDIs
        rbd, rados = rbd_module(), rados_module()
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
            raise ceph_error(e, 'creating SR in %s/%s' % (self.pool, self.namespace))

    @mapped()
    def sr_delete(self):
        rbd, rados = rbd_module(), rados_module()
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
            raise ceph_error(e, 'deleting SR %s' % self.sr_uuid)

        self._drop_host_files()

    @mapped('SRUnavailable')
    def sr_attach(self):
        self._omap([L.SR_UUID_KEY])

    def sr_detach(self):
        # the framework refused if a VDI is still attached on this host
        self._drop_host_files()

    def _drop_host_files(self):
        """The per-host files holding credentials and client records (datapath.py)."""
        from drivers.ceph import helper_files
        helper_files.drop_client_files(self.ctx.state_dir)
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

    @mapped()
    def sr_stats(self):
        """(size, used) of the pool from the cluster's own statistics (needs a mgr)."""
        import json
        rados = rados_module()
        cmd = json.dumps({'prefix': 'df', 'format': 'json'})
        try:
            ret, out, err = self.cluster.rados.mon_command(cmd, b'', timeout=15)
        except rados.Error as e:
            raise ceph_error(e, 'ceph df')
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

    @mapped()
    def probe(self):
        """SRs in the pool: every namespace holding an SR object (plus the default one)."""
        rbd, rados = rbd_module(), rados_module()
        root = self.cluster.ioctx(self.pool, '')
        found = []
        try:
            spaces = [''] + sorted(rbd.RBD().namespace_list(root))
        except rbd.Error as e:
            raise ceph_error(e, 'listing namespaces of pool %s' % self.pool)
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
