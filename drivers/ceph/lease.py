"""The single-writer lease of a VDI.

The object ``srkit.active.<vdi uuid>`` (JSON: host, since, datapath clients) is
created exclusively at a read-write activation and removed at deactivation.
While it exists, no other host may attach or activate the VDI read-write, and
the VDI cannot be deleted or reverted. Fencing a dead holder is an admin action
(admin.py, docs/ceph.md "Fencing a dead host").
"""

import time

from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, rados_module


class Lease(object):
    """The write leases of the SR's VDIs (``ctx``: SRContext; needs its io, host_id,
    state_dir and log). Public: ``read(uuid)``, ``check(uuid, what, allow_host=None)``,
    ``acquire(uuid)``, ``release(uuid)``."""

    def __init__(self, ctx):
        self.ctx = ctx

    def read(self, uuid):
        """The lease of VDI ``uuid`` (a dict), None when nobody holds it."""
        import json
        rados = rados_module()
        try:
            return json.loads(self.ctx.io.read(L.LEASE_PREFIX + uuid, 65536).decode() or '{}')
        except rados.ObjectNotFound:
            return None
        except ValueError:
            return {}

    def check(self, uuid, what, allow_host=None):
        """VDIInUse when a host (other than ``allow_host``) holds the lease."""
        lease = self.read(uuid)
        if lease is not None and (allow_host is None or lease.get('host') != allow_host):
            raise SRError('VDIInUse', 'cannot %s VDI %s: it is active read-write on host %s '
                          'since %s' % (what, uuid, lease.get('host'), lease.get('since')))

    def acquire(self, uuid):
        """Take the lease for this host (idempotent for the holder), naming the
        datapath clients of this host's attachment: what a fence blocklists."""
        import json
        from drivers.ceph import datapath
        rados = rados_module()
        host = self.ctx.host_id
        record = datapath.load_record(self.ctx.state_dir, uuid) or {}
        lease = {'host': host, 'since': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
                 'clients': record.get('clients', []), 'datapath': record.get('kind', '')}
        try:
            with rados.WriteOpCtx() as op:
                op.new(rados.LIBRADOS_CREATE_EXCLUSIVE)
                op.write_full(json.dumps(lease, sort_keys=True).encode())
                self.ctx.io.operate_write_op(op, L.LEASE_PREFIX + uuid)
        except rados.ObjectExists:
            held = self.read(uuid) or {}
            if held.get('host') == host:
                return  # this host already holds it (idempotent re-activation)
            raise SRError('VDIInUse', 'VDI %s is active read-write on host %s since %s; a VDI '
                          'is writable on one host at a time. If that host is dead, fence it '
                          '(docs/ceph.md: "Fencing a dead host")'
                          % (uuid, held.get('host'), held.get('since')))
        except rados.Error as e:
            raise ceph_error(e, 'taking the write lease of %s' % uuid, 'VDIUnavailable')

    def release(self, uuid):
        """Drop this host's lease; one another host holds is left alone (logged)."""
        import json
        rados = rados_module()
        lease = self.read(uuid)
        if lease is None:
            return
        if lease.get('host') != self.ctx.host_id:
            self.ctx.log.error('deactivate %s: lease held by %s, not this host; left alone'
                               % (uuid, lease.get('host')))
            return
        body = json.dumps(lease, sort_keys=True).encode()
        try:
            with rados.WriteOpCtx() as op:
                op.cmpext(body, 0)   # remove only the lease we read (a fence may have replaced it)
                op.remove()
                self.ctx.io.operate_write_op(op, L.LEASE_PREFIX + uuid)
        except rados.Error as e:
            raise ceph_error(e, 'releasing the write lease of %s' % uuid, 'VDIUnavailable')
