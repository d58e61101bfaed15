"""Who may use an image: the single-writer lease and the watchers of dead processes.

Lease: the object ``srkit.active.<vdi uuid>`` (JSON: host, since, datapath
clients) is created exclusively at a read-write activation and removed at
deactivation. While it exists, no other host may attach or activate the VDI
read-write, and the VDI cannot be deleted or reverted.

Watchers: a process that opens an image read-write holds a watch on it until it
closes it, or until the OSD times the watch out (~30 s) when the process was
killed. Each driver process that opens an image read-write records its client
(``<state_dir>/clients/<id>.json``: boot id, pid, start time, address) first, so
a later command on this host recognises the watch of a dead driver process and
blocklists that client: its watch and exclusive lock go at once, instead of the
image answering "in use" for half a minute.
"""

import os
import time

from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, mapped, rados_module
from drivers.ceph.index import is_dead, process_record

DEAD_CLIENT_BLOCKLIST = 600   # seconds; the client is dead, this only drops its watches
RECORD_TTL = 120              # a dead client's watch has timed out by then anyway
CLOSING_WAIT = 40             # seconds to wait out a detached datapath daemon of this host
                              # (more than the OSD's 30 s watch timeout)


class LeaseMixin(object):
    # --- clients of this host ------------------------------------------------------
    def _clients_dir(self):
        return os.path.join(self.ctx.state_dir, 'clients')

    def _register_client(self):
        import json
        if getattr(self, '_registered', False):
            return
        self._registered = True
        rados = self.cluster.rados
        record = process_record()
        record['addr'] = rados.get_addrs() if hasattr(rados, 'get_addrs') else ''
        path = os.path.join(self._clients_dir(), '%d.json' % rados.get_instance_id())
        try:
            if not os.path.isdir(self._clients_dir()):
                os.makedirs(self._clients_dir(), 0o700)
            with open(path + '.tmp', 'w') as f:
                json.dump(record, f)
            os.rename(path + '.tmp', path)
        except (IOError, OSError) as e:
            self.ctx.log.error('recording client %s: %s' % (path, e))

    def _register_datapath_clients(self, pid, vdi, clients):
        """Record the librbd clients a datapath daemon of this host (rbd-fuse,
        rbd-nbd: ``pid``) opened for VDI ``vdi``, as a driver process records its own:
        once the daemon is gone (a detach had to kill it, or it was killed), a watch
        it left is recognised as dead and blocklisted by the next command of this
        host, instead of answering VDIInUse until the OSD times it out (~30 s). A
        client another process of this host recorded first is not the daemon's, nor
        one from another address than this process's own (another host that opened
        the image during the attach: it must never be taken for a dead daemon)."""
        import json
        from drivers.ceph.index import boot_id, start_time
        record = {'boot': boot_id(), 'pid': int(pid), 'start': start_time(int(pid)),
                  'host': os.uname()[1], 'since': int(time.time()), 'datapath': vdi}
        rados = self.cluster.rados
        here = _ip_of(rados.get_addrs()) if hasattr(rados, 'get_addrs') else ''
        for client in clients:
            path = os.path.join(self._clients_dir(), '%d.json' % int(client['id']))
            if os.path.exists(path) or (here and _ip_of(client.get('addr', '')) != here):
                continue
            try:
                if not os.path.isdir(self._clients_dir()):
                    os.makedirs(self._clients_dir(), 0o700)
                with open(path + '.tmp', 'w') as f:
                    json.dump(dict(record, addr=client.get('addr', '')), f)
                os.rename(path + '.tmp', path)
            except (IOError, OSError) as e:
                self.ctx.log.error('recording datapath client %s: %s' % (path, e))

    def _dead_client(self, watcher_id):
        import json
        path = os.path.join(self._clients_dir(), '%d.json' % int(watcher_id))
        try:
            with open(path) as f:
                record = json.load(f)
        except (IOError, OSError, ValueError):
            return None
        return path if is_dead(record) else None

    def _prune_clients(self):
        now = time.time()
        try:
            names = os.listdir(self._clients_dir())
        except OSError:
            return
        for name in names:
            path = os.path.join(self._clients_dir(), name)
            try:
                if name.endswith('.json') and now - os.path.getmtime(path) > RECORD_TTL \
                        and self._dead_client(name[:-5]):
                    os.unlink(path)
            except (OSError, ValueError):
                pass

    def _evict_dead_watchers(self, name):
        """Blocklist the clients of dead driver processes of this host that still
        watch image ``name``; return the watchers left that are not this process."""
        rbd = _rbd()
        me = self.cluster.rados.get_instance_id()
        try:
            with self._image(name, read_only=True) as img:
                watchers = [w for w in img.watchers_list() if int(w['id']) != me]
                dead = [(w, self._dead_client(w['id'])) for w in watchers]
                dead = [(w, p) for w, p in dead if p]
                for w, path in dead:
                    self.ctx.log.info('image %s: watcher client.%s (%s) is a killed driver '
                                      'process; blocklisting it' % (name, w['id'], w['addr']))
                    self.cluster.rados.blocklist_add(w['addr'], DEAD_CLIENT_BLOCKLIST)
                gone = set(w['addr'] for w, _ in dead)
                deadline = time.time() + 10
                left = watchers
                while gone and time.time() < deadline:
                    left = [w for w in img.watchers_list() if int(w['id']) != me]
                    if not gone & set(w['addr'] for w in left):
                        break
                    time.sleep(0.05)
                # a record goes only once its watch has: until then it is recognised again
                for w, path in dead:
                    if w['addr'] not in set(x['addr'] for x in left):
                        try:
                            os.unlink(path)
                        except OSError:
                            pass
                return [w for w in left if w['addr'] not in gone]
        except SRError:
            return []
        except rbd.Error as e:
            raise ceph_error(e, 'listing the watchers of %s' % name)

    def _closing_client(self, watcher_id):
        """Whether a watcher is a datapath daemon of this host whose attachment is
        already detached: it is on its way out (its detach waits for it to go), so
        a command waits for it rather than failing with VDIInUse."""
        import json
        from drivers.ceph import datapath
        path = os.path.join(self._clients_dir(), '%d.json' % int(watcher_id))
        try:
            with open(path) as f:
                record = json.load(f)
        except (IOError, OSError, ValueError):
            return False
        vdi = record.get('datapath')
        return bool(vdi) and datapath.load_record(self.ctx.state_dir, vdi) is None

    def _refuse_if_open(self, name, what):
        watchers = self._evict_dead_watchers(name)
        deadline = time.time() + CLOSING_WAIT
        while watchers and time.time() < deadline and \
                all(self._closing_client(w['id']) for w in watchers):
            time.sleep(0.1)
            watchers = self._evict_dead_watchers(name)
        if watchers:
            raise SRError('VDIInUse', 'cannot %s: image %s is open by %s'
                          % (what, name, ', '.join(w['addr'] for w in watchers)))

    # --- the lease -----------------------------------------------------------------
    def _lease(self, uuid):
        import json
        rados = rados_module()
        try:
            return json.loads(self.io.read(L.LEASE_PREFIX + uuid, 65536).decode() or '{}')
        except rados.ObjectNotFound:
            return None
        except ValueError:
            return {}

    def _check_lease(self, uuid, what, allow_host=None):
        lease = self._lease(uuid)
        if lease is not None and (allow_host is None or lease.get('host') != allow_host):
            raise SRError('VDIInUse', 'cannot %s VDI %s: it is active read-write on host %s '
                          'since %s' % (what, uuid, lease.get('host'), lease.get('since')))

    @mapped('VDIUnavailable')
    def activate(self, uuid, writable):
        import json
        if not writable:
            return
        from drivers.ceph import datapath
        rados = rados_module()
        entry = self._need(uuid)
        if entry.kind == L.SNAP:
            return
        host = self.ctx.host_id
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
            raise ceph_error(e, 'taking the write lease of %s' % uuid, 'VDIUnavailable')

    @mapped('VDIUnavailable')
    def deactivate(self, uuid):
        import json
        rados = rados_module()
        lease = self._lease(uuid)
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
                self.io.operate_write_op(op, L.LEASE_PREFIX + uuid)
        except rados.Error as e:
            raise ceph_error(e, 'releasing the write lease of %s' % uuid, 'VDIUnavailable')


def _ip_of(addr):
    """The IP of a Ceph entity address ('1.2.3.4:0/123', '[v2:1.2.3.4:0/1,v1:...]')."""
    first = addr.strip('[]').split(',')[0]
    for prefix in ('v1:', 'v2:', 'any:'):
        if first.startswith(prefix):
            first = first[len(prefix):]
    return first.rsplit(':', 1)[0].strip('[]')


def _rbd():
    from drivers.ceph.connection import rbd_module
    return rbd_module()
