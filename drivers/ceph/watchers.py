"""Who has an image open: this host's librbd clients, the watches dead ones left,
and opening an image (which registers this process's client first).

A process that opens an image read-write holds a watch on it until it closes it,
or until the OSD times the watch out (~30 s) when the process was killed. Each
driver process that opens an image read-write records its client
(``<state_dir>/clients/<id>.json``: boot id, pid, start time, address) first, so a
later command on this host recognises the watch of a dead driver process and
blocklists that client: its watch and exclusive lock go at once, instead of the
image answering "in use" for half a minute.

``Watchers`` keeps those records and evicts dead watchers; ``Images`` opens images
for every other part of the driver, a read-write open through ``Watchers``.
"""

import os
import time

from framework.errors import SRError
from drivers.ceph.connection import ceph_error, rbd_module
from drivers.ceph.index import boot_id, is_dead, process_record, start_time

DEAD_CLIENT_BLOCKLIST = 600   # seconds; the client is dead, this only drops its watches
RECORD_TTL = 120              # a dead client's watch has timed out by then anyway
CLOSING_WAIT = 40             # seconds to wait out a detached datapath daemon of this host
                              # (more than the OSD's 30 s watch timeout)


class Watchers(object):
    """The client records of this host (``ctx``: SRContext; needs its cluster,
    state_dir and log). Public: ``register_self()``,
    ``register_datapath(pid, vdi, clients)``, ``note_open(name)``, ``dead(watcher_id)``,
    ``prune()``, ``evict_dead(name)``, ``refuse_if_open(name, what)``."""

    def __init__(self, ctx):
        self.ctx = ctx
        self._registered = False

    def _dir(self):
        return os.path.join(self.ctx.state_dir, 'clients')

    def _path(self, client_id):
        return os.path.join(self._dir(), '%d.json' % int(client_id))

    @staticmethod
    def _read(path):
        """The record at ``path``; None when it is missing or unreadable."""
        import json
        try:
            with open(path) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return None

    def _write(self, path, record):
        """Write ``record`` at ``path`` in one rename (IOError/OSError to the caller)."""
        import json
        if not os.path.isdir(self._dir()):
            os.makedirs(self._dir(), 0o700)
        with open(path + '.tmp', 'w') as f:
            json.dump(record, f)
        os.rename(path + '.tmp', path)

    def register_self(self):
        """Record this process's client (once per process), before its first
        read-write open."""
        if self._registered:
            return
        self._registered = True
        rados = self.ctx.cluster.rados
        record = process_record()
        record['addr'] = rados.get_addrs() if hasattr(rados, 'get_addrs') else ''
        path = self._path(rados.get_instance_id())
        try:
            self._write(path, record)
        except (IOError, OSError) as e:
            self.ctx.log.error('recording client %s: %s' % (path, e))

    def register_datapath(self, pid, vdi, clients):
        """Record the librbd clients a datapath daemon of this host (rbd-fuse,
        rbd-nbd: ``pid``) opened for VDI ``vdi``, as a driver process records its own:
        once the daemon is gone (a detach had to kill it, or it was killed), a watch
        it left is recognised as dead and blocklisted by the next command of this
        host, instead of answering VDIInUse until the OSD times it out (~30 s). A
        client another process of this host recorded first is not the daemon's, nor
        one from another address than this process's own (another host that opened
        the image during the attach: it must never be taken for a dead daemon)."""
        record = {'boot': boot_id(), 'pid': int(pid), 'start': start_time(int(pid)),
                  'host': os.uname()[1], 'since': int(time.time()), 'datapath': vdi}
        rados = self.ctx.cluster.rados
        here = _ip_of(rados.get_addrs()) if hasattr(rados, 'get_addrs') else ''
        for client in clients:
            path = self._path(client['id'])
            if os.path.exists(path) or (here and _ip_of(client.get('addr', '')) != here):
                continue
            try:
                self._write(path, dict(record, addr=client.get('addr', '')))
            except (IOError, OSError) as e:
                self.ctx.log.error('recording datapath client %s: %s' % (path, e))

    def dead(self, watcher_id):
        """The record path of ``watcher_id`` if it is a dead process of this host."""
        path = self._path(watcher_id)
        record = self._read(path)
        return path if record is not None and is_dead(record) else None

    def note_open(self, name):
        """Add image ``name`` to this process's record before a read-write open: if
        the process is killed before it closes the image, ``prune`` knows where its
        watch is."""
        path = self._path(self.ctx.cluster.rados.get_instance_id())
        record = self._read(path)
        if record is None:
            self.ctx.log.error('recording image %s: no readable client record %s'
                               % (name, path))
            return
        if name in record.get('images', ()):
            return
        record['images'] = record.get('images', []) + [name]
        try:
            self._write(path, record)
        except (IOError, OSError) as e:
            self.ctx.log.error('recording image %s in %s: %s' % (name, path, e))

    def prune(self):
        """The scan's sweep of this host's client records. A process killed after its
        command cleared its intent but before it closed an image leaves a watch no
        recovery step looks at, which the OSD drops only ~30 s later: the images its
        record names are checked now and its watch blocklisted (``evict_dead``), so
        a scan leaves nothing of a killed command behind. The records of other dead
        clients go once their watches have timed out."""
        now = time.time()
        try:
            names = os.listdir(self._dir())
        except OSError:
            return
        for name in names:
            path = os.path.join(self._dir(), name)
            try:
                if not name.endswith('.json'):
                    continue
                record = self._read(path)
                if record is None or not is_dead(record):
                    continue
                young = now - os.path.getmtime(path) <= RECORD_TTL
                for image in record.get('images', ()) if young else ():
                    self.evict_dead(image)
                if not young or record.get('images'):
                    # its watches are gone or blocklisted: nothing left to recognise
                    os.unlink(path)
            except (OSError, ValueError):
                pass
            except SRError as e:   # the record stays: the next scan tries again
                self.ctx.log.error('client record %s: %s' % (name, e.message))

    def evict_dead(self, name):
        """Blocklist the clients of dead driver processes of this host that still
        watch image ``name``; return the watchers left that are not this process."""
        rbd = rbd_module()
        me = self.ctx.cluster.rados.get_instance_id()
        try:
            with self.ctx.open_image(name, read_only=True) as img:
                watchers = [w for w in img.watchers_list() if int(w['id']) != me]
                dead = [(w, self.dead(w['id'])) for w in watchers]
                dead = [(w, p) for w, p in dead if p]
                for w, path in dead:
                    self.ctx.log.info('image %s: watcher client.%s (%s) is a killed driver '
                                      'process; blocklisting it' % (name, w['id'], w['addr']))
                    self.ctx.cluster.rados.blocklist_add(w['addr'], DEAD_CLIENT_BLOCKLIST)
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

    def _closing(self, watcher_id):
        """Whether a watcher is a datapath daemon of this host whose attachment is
        already detached: it is on its way out (its detach waits for it to go), so
        a command waits for it rather than failing with VDIInUse."""
        from drivers.ceph import datapath
        record = self._read(self._path(watcher_id))
        if record is None:
            return False
        vdi = record.get('datapath')
        return bool(vdi) and datapath.load_record(self.ctx.state_dir, vdi) is None

    def refuse_if_open(self, name, what):
        """VDIInUse unless image ``name`` is open by nobody alive but this process."""
        watchers = self.evict_dead(name)
        deadline = time.time() + CLOSING_WAIT
        while watchers and time.time() < deadline and \
                all(self._closing(w['id']) for w in watchers):
            time.sleep(0.1)
            watchers = self.evict_dead(name)
        if watchers:
            raise SRError('VDIInUse', 'cannot %s: image %s is open by %s'
                          % (what, name, ', '.join(w['addr'] for w in watchers)))


class Images(object):
    """Opening the SR's images (``ctx``: SRContext, ``watchers``: Watchers). Public:
    ``open(name, read_only=False, snapshot=None)``, a context manager."""

    def __init__(self, ctx, watchers):
        self.ctx = ctx
        self.watchers = watchers

    def open(self, name, read_only=False, snapshot=None):
        """An open image; a read-write open first records this process's client and
        evicts the watch of a killed driver process."""
        if not read_only:
            self.watchers.register_self()
            self.watchers.note_open(name)
        img = self.ctx.open_image(name, read_only=read_only, snapshot=snapshot)
        if not read_only:
            try:
                me = self.ctx.cluster.rados.get_instance_id()
                if any(self.watchers.dead(w['id']) for w in img.watchers_list()
                       if int(w['id']) != me):
                    self.watchers.evict_dead(name)
            except BaseException:
                # never leave an open image to the garbage collector: closed after the
                # cluster handle is shut down, librbd may abort the process
                img.close()
                raise
        return img


def _ip_of(addr):
    """The IP of a Ceph entity address ('1.2.3.4:0/123', '[v2:1.2.3.4:0/1,v1:...]')."""
    first = addr.strip('[]').split(',')[0]
    for prefix in ('v1:', 'v2:', 'any:'):
        if first.startswith(prefix):
            first = first[len(prefix):]
    return first.rsplit(':', 1)[0].strip('[]')
