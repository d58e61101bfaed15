"""The SR index (omap of ``srkit.sr``) and the intents of commands in flight.

The index is a cache of the image metadata (``vdi.<uuid>``), plus what changes
often (``used.<uuid>``), the images kept for dependants (``retained.<image>``)
and one *intent* per mutating command in flight (``pending.<uuid>``).

An intent is written before a command's first backend step and removed with
its last one. It names the command, the image (and snapshot) it works on and
who runs it: boot id, pid and process start time, so the SR master can tell a
dead command of its own host (roll it forward or back now, see scan.py) from a
live one on another host (left alone for ``gc_grace`` seconds).
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


class IndexMixin(object):
    def _omap(self, keys=None, obj=L.SR_OBJECT):
        """{key: value} of the index (all keys, or only ``keys``); SRUnavailable if
        the SR object is gone."""
        rados = rados_module()
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
            raise ceph_error(e, 'reading the SR index')
        return dict((k, v.decode('utf-8') if isinstance(v, bytes) else (v or ''))
                    for k, v in out.items())

    def _index_set(self, values=None, remove=()):
        """One atomic update of the index."""
        rados = rados_module()
        try:
            with rados.WriteOpCtx() as op:
                if values:
                    keys = tuple(values)
                    self.io.set_omap(op, keys, tuple(values[k].encode('utf-8') for k in keys))
                if remove:
                    self.io.remove_omap_keys(op, tuple(remove))
                self.io.operate_write_op(op, L.SR_OBJECT)
        except rados.Error as e:
            raise ceph_error(e, 'updating the SR index')

    # --- intents -------------------------------------------------------------------
    def _begin(self, op, uuid, image, snap='', **extra):
        """Record that ``op`` on VDI ``uuid`` starts (before its first backend step)."""
        import json
        intent = process_record()
        intent.update(extra, op=op, uuid=uuid, image=image, snap=snap)
        self._index_set({L.PENDING_PREFIX + uuid: json.dumps(intent, sort_keys=True)})
        crash.point('rbd.%s.after-intent' % op)
        return intent

    def _intents(self, index):
        import json
        out = {}
        for key, value in index.items():
            if key.startswith(L.PENDING_PREFIX):
                try:
                    out[key[len(L.PENDING_PREFIX):]] = json.loads(value)
                except ValueError:
                    out[key[len(L.PENDING_PREFIX):]] = {}
        return out

    def _recoverable(self, intent):
        """May this process roll ``intent`` forward or back now? Yes when its command
        died on this host, or when it is older than the grace period (a command on
        another host never takes that long: it was lost with its host)."""
        if not intent.get('op'):
            return True
        if is_dead(intent):
            return True
        return time.time() - float(intent.get('since') or 0) > self._grace()

    def _grace(self):
        """device-config gc_grace, else the framework's (SRKIT_GC_GRACE for tests)."""
        value = self.config.get('gc_grace')
        return float(value) if value not in (None, '') else crash.grace()

    # --- entries --------------------------------------------------------------------
    def _put(self, entry, image=None, used=None, done=None, point=None):
        """Record ``entry`` in the image metadata (authoritative), then in the index,
        removing the intent of command ``done`` in the same index update."""
        meta_key = L.META_VDI_PREFIX + entry.uuid
        text = entry.dump()
        if image is not None:
            image.metadata_set(meta_key, text)
        else:
            with self._image(entry.image) as img:
                img.metadata_set(meta_key, text)
        crash.point('rbd.%s.after-meta' % (point or done or 'set_meta'))
        values = {L.VDI_PREFIX + entry.uuid: text}
        if used is not None:
            values[L.USED_PREFIX + entry.uuid] = str(int(used))
        self._index_set(values, (L.PENDING_PREFIX + entry.uuid,) if done else ())

    def _entry(self, uuid):
        found = self._omap([L.VDI_PREFIX + uuid])
        text = found.get(L.VDI_PREFIX + uuid)
        return L.Entry.load(uuid, text) if text else None

    def _need(self, uuid):
        entry = self._entry(uuid)
        if entry is None:
            raise SRError('VDIMissing', 'no VDI %s in SR %s' % (uuid, self.sr_uuid))
        return entry
