"""The SR index (omap of ``srkit.sr``) and the intents of commands in flight.

The index is a cache of the image metadata (``vdi.<uuid>``), plus what changes
often (``used.<uuid>``), the images kept for dependants (``retained.<image>``)
and one *intent* per mutating command in flight (``pending.<uuid>``).

An intent is written before a command's first backend step and removed with
its last one. It names the command, the image (and snapshot) it works on and
who runs it: boot id, pid and process start time, so the SR master can tell a
dead command of its own host (roll it forward or back now, see recovery.py) from a
live one on another host (left alone for ``gc_grace`` seconds).

``Index`` is the one object that reads and writes them; ``process_record`` and
``is_dead`` say who runs a command (also for client records, watchers.py, and
kernel datapath records, attach.py).
"""

import os
import time

from framework import crash
from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, rados_module

OMAP_PAGE = 1024   # the OSD caps a reply (osd_max_omap_entries_per_request)


def boot_id():
    try:
        with open('/proc/sys/kernel/random/boot_id') as f:
            return f.read().strip()
    except (IOError, OSError):
        return ''


def start_time(pid):
    """Start time of ``pid`` in clock ticks since boot ('' if it does not exist)."""
    try:
        with open('/proc/%d/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return '' if fields[0] == 'Z' else fields[19]
    except (IOError, OSError, IndexError, ValueError):
        return ''


def process_record():
    pid = os.getpid()
    return {'boot': boot_id(), 'pid': pid, 'start': start_time(pid),
            'host': os.uname()[1], 'since': int(time.time())}


def is_dead(record):
    """True when ``record`` (process_record) names a process of this boot that is gone;
    False when it is alive or ran on another host/boot (unknowable from here)."""
    if not record.get('boot') or record.get('boot') != boot_id():
        return False
    pid = int(record.get('pid') or 0)
    return pid <= 0 or start_time(pid) != str(record.get('start'))


class Index(object):
    """The SR index and its intents (``ctx``: SRContext, for its io; ``images``:
    watchers.Images, to write an entry into its image). Public: ``read(keys=None)``,
    ``update(values=None, remove=())``, ``entry(uuid)``, ``need(uuid)``,
    ``put(entry, ...)``, ``begin(op, uuid, image, ...)``, ``intents(index)``,
    ``recoverable(intent)``, ``in_flight(uuid, ignore=None)``."""

    def __init__(self, ctx, images):
        self.ctx = ctx
        self.images = images

    def read(self, keys=None, obj=L.SR_OBJECT):
        """{key: value} of the index (all keys, or only ``keys``); SRUnavailable if
        the SR object is gone."""
        rados = rados_module()
        io = self.ctx.io
        out = {}
        try:
            if keys is not None:
                with rados.ReadOpCtx() as op:
                    it, _ = io.get_omap_vals_by_keys(op, tuple(keys))
                    io.operate_read_op(op, obj)
                    out.update(it)
            else:
                start = ''
                while True:
                    with rados.ReadOpCtx() as op:
                        it, _ = io.get_omap_vals(op, start, '', OMAP_PAGE)
                        io.operate_read_op(op, obj)
                        page = list(it)
                    if not page:
                        break  # the OSD may return fewer than asked: stop on an empty page
                    out.update(page)
                    start = page[-1][0]
        except rados.ObjectNotFound:
            raise SRError('SRUnavailable', 'no SR %s in pool %s namespace %s (deleted, or '
                          'wrong pool/namespace in device-config)'
                          % (self.ctx.sr_uuid, self.ctx.pool, self.ctx.namespace))
        except rados.Error as e:
            raise ceph_error(e, 'reading the SR index')
        return dict((k, v.decode('utf-8') if isinstance(v, bytes) else (v or ''))
                    for k, v in out.items())

    def update(self, values=None, remove=()):
        """One atomic update of the index."""
        rados = rados_module()
        io = self.ctx.io
        try:
            with rados.WriteOpCtx() as op:
                if values:
                    keys = tuple(values)
                    io.set_omap(op, keys, tuple(values[k].encode('utf-8') for k in keys))
                if remove:
                    io.remove_omap_keys(op, tuple(remove))
                io.operate_write_op(op, L.SR_OBJECT)
        except rados.Error as e:
            raise ceph_error(e, 'updating the SR index')

    # --- intents -------------------------------------------------------------------
    def begin(self, op, uuid, image, snap='', **extra):
        """Record that ``op`` on VDI ``uuid`` starts (before its first backend step)."""
        import json
        intent = process_record()
        intent.update(extra, op=op, uuid=uuid, image=image, snap=snap)
        self.update({L.PENDING_PREFIX + uuid: json.dumps(intent, sort_keys=True)})
        crash.point('rbd.%s.after-intent' % op)
        return intent

    @staticmethod
    def intents(index):
        """{vdi uuid: intent} of an index ``read()`` returned."""
        import json
        out = {}
        for key, value in index.items():
            if key.startswith(L.PENDING_PREFIX):
                try:
                    out[key[len(L.PENDING_PREFIX):]] = json.loads(value)
                except ValueError:
                    out[key[len(L.PENDING_PREFIX):]] = {}
        return out

    def recoverable(self, intent):
        """May this process roll ``intent`` forward or back now? Yes when its command
        died on this host, or when it is older than the grace period (a command on
        another host never takes that long: it was lost with its host)."""
        if not intent.get('op'):
            return True
        if is_dead(intent):
            return True
        return time.time() - float(intent.get('since') or 0) > self.ctx.grace()

    def in_flight(self, uuid, ignore=None):
        """A live command (an intent not ours to recover) is building VDI ``uuid``."""
        if not uuid or uuid == ignore:
            return False
        text = self.read([L.PENDING_PREFIX + uuid]).get(L.PENDING_PREFIX + uuid)
        if text is None:
            return False
        import json
        try:
            return not self.recoverable(json.loads(text))
        except ValueError:
            return False

    # --- entries --------------------------------------------------------------------
    def put(self, entry, image=None, used=None, done=None, point=None):
        """Record ``entry`` in the image metadata (authoritative), then in the index,
        removing the intent of command ``done`` in the same index update."""
        meta_key = L.META_VDI_PREFIX + entry.uuid
        text = entry.dump()
        if image is not None:
            image.metadata_set(meta_key, text)
        else:
            with self.images.open(entry.image) as img:
                img.metadata_set(meta_key, text)
        crash.point('rbd.%s.after-meta' % (point or done or 'set_meta'))
        values = {L.VDI_PREFIX + entry.uuid: text}
        if used is not None:
            values[L.USED_PREFIX + entry.uuid] = str(int(used))
        self.update(values, (L.PENDING_PREFIX + entry.uuid,) if done else ())

    def entry(self, uuid):
        """The Entry of VDI ``uuid``, None if the index has none."""
        found = self.read([L.VDI_PREFIX + uuid])
        text = found.get(L.VDI_PREFIX + uuid)
        return L.Entry.load(uuid, text) if text else None

    def need(self, uuid):
        """The Entry of VDI ``uuid``; VDIMissing if the index has none."""
        entry = self.entry(uuid)
        if entry is None:
            raise SRError('VDIMissing', 'no VDI %s in SR %s' % (uuid, self.ctx.sr_uuid))
        return entry
