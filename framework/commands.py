"""SMAPIv1 command semantics, written once on top of the driver primitives.

Each handler takes an ``Invocation`` and returns the reply value (None for
xapi's unit commands). Handlers address volumes by ``vdi_location`` (xapi's
key for the backend object), never by guessing from the VDI uuid.
"""

import os
import time

from framework import crash
from framework import meta as m
from framework import driver as contract
from framework.errors import SRError
from framework.locks import sr_lock, vdi_lock
from framework.options import configuration, is_sensitive, validate
from framework.wire import encode_call, is_xml_char

MASTER_ONLY = ('sr_scan', 'vdi_create', 'vdi_delete', 'vdi_snapshot', 'vdi_clone',
               'vdi_resize', 'vdi_compose', 'vdi_enable_cbt', 'vdi_disable_cbt',
               'vdi_data_destroy', 'vdi_list_changed_blocks')

# Known to SMAPIv1 but not offered by srkit drivers: answered with Unimplemented (38).
UNIMPLEMENTED = ('sr_content_type', 'vdi_compose', 'vdi_enable_cbt', 'vdi_disable_cbt',
                 'vdi_data_destroy', 'vdi_list_changed_blocks', 'vdi_resize_online')

STATE_ROOT = '/run/srkit'


def _state_root():
    return os.environ.get('SRKIT_STATE_DIR') or STATE_ROOT


# --- helpers ---------------------------------------------------------------------

def _vdi_info(uuid, location):
    return {'uuid': uuid, 'location': location}


_DIGITS = frozenset('0123456789')
_HEX = frozenset('0123456789abcdef')
_NAME_CHARS = frozenset('abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-')


def _parse_size(text, what='size'):
    # ASCII digits only: int() would also take ' 1', '1_0' and non-Latin digits
    if not isinstance(text, str) or not text or not set(text) <= _DIGITS:
        if isinstance(text, str) and text.startswith('-') and text[1:] and \
                set(text[1:]) <= _DIGITS:
            raise SRError('VDISize', '%s %s is negative' % (what, text))
        raise SRError('VDISize', '%s %r is not a whole number of bytes' % (what, text))
    return int(text)


def _check_uuid(text, what):
    parts = text.split('-') if isinstance(text, str) else []
    if [len(p) for p in parts] != [8, 4, 4, 4, 12] or not set(''.join(parts)) <= _HEX:
        raise SRError('BadRequest', '%s %r is not a lower-case UUID' % (what, text))
    return text


def _is_location(text):
    # a location names a backend object: never a path, never hidden
    return bool(text) and set(text) <= _NAME_CHARS and not text.startswith('.') \
        and len(text) <= 200


def _check_location(text):
    if not _is_location(text):
        raise SRError('VDIMissing', 'location %r cannot name a VDI of this SR' % (text,))
    return text


def _check_vdi_size(cls, size):
    if size > cls.max_vdi_size:
        raise SRError('VDISize', 'size %d exceeds the maximum of %d bytes for this SR type'
                      % (size, cls.max_vdi_size))
    grain = cls.size_granularity
    return (size + grain - 1) // grain * grain


def _check_xml_text(*texts):
    for text in texts:
        if any(not is_xml_char(c) for c in text):
            raise SRError('IllegalXMLChar', 'name or description contains characters '
                          'that are not legal in XML')


def _flag(text):
    return str(text).lower() == 'true'


def _now():
    return time.strftime('%Y%m%dT%H:%M:%SZ', time.gmtime())


def _require(inv, primitive):
    if not contract.implements(inv.driver_cls, primitive):
        raise SRError('Unimplemented', '%s SRs do not support %s'
                      % (inv.driver_cls.name, inv.command))


def _volume(inv, location=None):
    location = _check_location(location or inv.request.get('vdi_location'))
    volume = inv.driver.get(location)
    if volume is None:
        raise SRError('VDIMissing', 'no VDI at location %s in SR %s'
                      % (location, inv.sr_uuid))
    return volume


class _Marker(object):
    """A per-host record that a VDI is attached/active here (idempotency)."""

    def __init__(self, inv, location, kind):
        self.path = os.path.join(inv.state_dir, '%s.%s' % (_check_location(location), kind))

    @staticmethod
    def locations(inv, kind):
        """The locations that have a ``kind`` marker on this host."""
        suffix = '.' + kind
        return sorted(n[:-len(suffix)] for n in os.listdir(inv.state_dir)
                      if n.endswith(suffix))

    def read(self):
        try:
            with open(self.path) as f:
                return f.read()
        except IOError:
            return None

    def write(self, text):
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, self.path)

    def clear(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass


def _attached_here(inv, location):
    return _Marker(inv, location, 'attach').read() is not None


# --- SR commands -----------------------------------------------------------------

def sr_get_driver_info(inv):
    cls = inv.driver_cls
    return {
        'name': cls.name,
        'description': cls.description,
        'vendor': cls.vendor,
        'copyright': cls.copyright,
        'driver_version': cls.driver_version,
        'required_api_version': '1.0',
        'capabilities': contract.capabilities(cls),
        'configuration': configuration(cls.options),
        'supported_image_formats': ['raw'],
    }


def _update_sr_sizes(inv, volumes=None):
    if volumes is None:
        volumes = inv.driver.list()
    physical_size, physical_utilisation = inv.driver.sr_stats()
    allocation = sum(v.virtual_size for v in volumes.values())
    inv.xapi.set_sr_sizes(physical_size, physical_utilisation, allocation)


def sr_create(inv):
    size = _parse_size(inv.request.args[0] if inv.request.args else '0', 'physical size')
    with sr_lock(inv.sr_uuid):
        inv.driver.sr_create(size)
        _update_sr_sizes(inv, {})


def sr_delete(inv):
    with sr_lock(inv.sr_uuid):
        volumes = inv.driver.list()
        if volumes:
            raise SRError('SRNotEmpty', 'SR %s still holds %d VDI(s)'
                          % (inv.sr_uuid, len(volumes)))
        inv.driver.sr_delete()


def sr_attach(inv):
    with sr_lock(inv.sr_uuid):
        inv.driver.sr_attach()


def sr_detach(inv):
    with sr_lock(inv.sr_uuid):
        busy = _Marker.locations(inv, 'attach')
        if busy:
            raise SRError('SRInUse', 'VDI(s) still attached on this host: %s'
                          % ', '.join(busy))
        inv.driver.sr_detach()


def sr_update(inv):
    with sr_lock(inv.sr_uuid):
        _update_sr_sizes(inv)


def sr_scan(inv):
    with sr_lock(inv.sr_uuid):
        inv.driver.collect_garbage()
        volumes = inv.driver.list()
        reconcile(inv, volumes)
        _update_sr_sizes(inv, volumes)


def reconcile(inv, volumes):
    """Make xapi's VDIs of this SR match the backend (keyed by location)."""
    xapi, driver = inv.xapi, inv.driver
    records = xapi.vdi_records()
    by_location = dict((rec['location'], ref) for ref, rec in records.items())
    uuid_of_ref = dict((ref, rec['uuid']) for ref, rec in records.items())
    ref_of_uuid = dict((rec['uuid'], ref) for ref, rec in records.items())

    for location, ref in by_location.items():
        if location not in volumes:
            inv.log.info('scan: forgetting VDI %s (gone from the backend)' % location)
            xapi.forget(ref)

    for location, volume in volumes.items():
        ref = by_location.get(location)
        if ref is None:
            continue
        rec = records[ref]
        if str(rec['virtual_size']) != str(volume.virtual_size) or \
                str(rec['physical_utilisation']) != str(volume.physical_utilisation):
            xapi.set_vdi_sizes(ref, volume)
        if bool(rec['read_only']) != volume.read_only:
            xapi.set_read_only(ref, volume.read_only)
        # xapi is the authority on names while it knows the VDI: keep the backend copy
        # current, so a later scan on a fresh pool restores what users last saw.
        current = m.from_record(rec, lambda r: uuid_of_ref.get(r, ''))
        wanted = m.merged(volume.meta, current)
        if wanted != volume.meta:
            driver.set_meta(location, wanted)

    # parents before the snapshots that point at them
    new = [v for loc, v in volumes.items() if loc not in by_location]
    new.sort(key=lambda v: m.flag(v.meta, m.IS_SNAPSHOT))
    for volume in new:
        parent_ref = ref_of_uuid.get(volume.meta.get(m.SNAPSHOT_OF, ''), 'OpaqueRef:NULL')
        uuid = volume.uuid
        if uuid in ref_of_uuid:  # taken by a VDI at another location (vdi_introduce)
            uuid = new_uuid()
        ref = xapi.introduce(volume, volume.meta, parent_ref, uuid=uuid)
        ref_of_uuid[uuid] = ref
        inv.log.info('scan: introduced VDI %s (%s)' % (volume.uuid, volume.meta.get(m.NAME)))


def sr_probe(inv):
    _require(inv, 'probe')
    found = inv.driver.probe()
    lines = ['<?xml version="1.0" ?>', '<SRlist>']
    for sr in found:
        lines.append('\t<SR>')
        for tag, key in (('UUID', 'uuid'), ('Size', 'size'), ('name_label', 'name_label'),
                         ('name_description', 'name_description'), ('Aggregate', 'aggregate')):
            if sr.get(key) not in (None, ''):
                lines.append('\t\t<%s>%s</%s>' % (tag, _xml_text(str(sr[key])), tag))
        lines.append('\t</SR>')
    lines.append('</SRlist>')
    return '\n'.join(lines) + '\n'


def _xml_text(text):
    return text.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')


# --- VDI commands ------------------------------------------------------------------

def vdi_create(inv):
    args = list(inv.request.args) + [''] * 8
    size = _check_vdi_size(inv.driver_cls, _parse_size(args[0]))
    name, description = args[1], args[2]
    _check_xml_text(name, description)
    vdi_type = inv.request.get('vdi_type') or 'user'
    if vdi_type not in m.VDI_TYPES:
        raise SRError('VDIType', 'VDI type %r is not one of %s'
                      % (vdi_type, ', '.join(m.VDI_TYPES)))
    uuid = _check_uuid(inv.request.get('vdi_uuid'), 'vdi_uuid') \
        if inv.request.get('vdi_uuid') else new_uuid()
    record = m.new(name, description, vdi_type, _flag(args[7]), _flag(args[4]),
                   '', args[5] or m.EPOCH)
    with sr_lock(inv.sr_uuid):
        if inv.driver.get(uuid) is not None:
            raise SRError('VDIExists', 'a VDI %s already exists in SR %s' % (uuid, inv.sr_uuid))
        volume = inv.driver.create(uuid, size, record)
        crash.point('fw.vdi_create.before-introduce')
        _introduce_or_undo(inv, volume, record)
    return _vdi_info(uuid, uuid)


def _introduce_or_undo(inv, volume, record, snapshot_of_ref='OpaqueRef:NULL'):
    try:
        return inv.xapi.introduce(volume, record, snapshot_of_ref)
    except Exception:
        # xapi will not know this volume: leave nothing behind on the backend
        inv.driver.destroy(volume.uuid)
        raise


def vdi_introduce(inv):
    location = inv.request.get('vdi_location')
    uuid = _check_uuid(inv.request.get('new_uuid'), 'new_uuid') \
        if inv.request.get('new_uuid') else new_uuid()
    with sr_lock(inv.sr_uuid):
        # only a bad name means "nothing there"; a backend error must surface as itself
        volume = inv.driver.get(location) if _is_location(location) else None
        if volume is None:
            raise SRError('VDIUnavailable', 'nothing to introduce at location %r in SR %s'
                          % (location, inv.sr_uuid))
        parent = volume.meta.get(m.SNAPSHOT_OF, '')
        parent_ref = 'OpaqueRef:NULL'
        if parent:
            parent_ref = dict((rec['uuid'], ref) for ref, rec in
                              inv.xapi.vdi_records().items()).get(parent, parent_ref)
        inv.xapi.introduce(volume, volume.meta, parent_ref, uuid=uuid)
    return _vdi_info(uuid, location)


def vdi_delete(inv):
    location = _check_location(inv.request.get('vdi_location'))
    with sr_lock(inv.sr_uuid), vdi_lock(inv.vdi_uuid):
        if _attached_here(inv, location):
            raise SRError('VDIInUse', 'VDI %s is attached on this host' % inv.vdi_uuid)
        if inv.driver.get(location) is not None:
            inv.driver.destroy(location)
        else:
            inv.log.info('vdi_delete: %s already gone from the backend' % location)
        crash.point('fw.vdi_delete.before-forget')
        inv.xapi.forget(inv.request.get('vdi_ref'))


def vdi_update(inv):
    with vdi_lock(inv.vdi_uuid):
        volume = _volume(inv)
        record = inv.xapi.vdi_record(inv.request.get('vdi_ref'))
        _check_xml_text(record.get('name_label', ''), record.get('name_description', ''))
        parent = record.get('snapshot_of') or ''
        current = m.from_record(record, lambda ref: inv.xapi.vdi_uuid(ref) if ref == parent else '')
        wanted = m.merged(volume.meta, current)
        if wanted != volume.meta:
            inv.driver.set_meta(volume.uuid, wanted)


def _copy(inv, primitive, make_meta):
    _require(inv, primitive)
    with sr_lock(inv.sr_uuid), vdi_lock(inv.vdi_uuid):
        source = _volume(inv)
        uuid = new_uuid()
        record = make_meta(source.meta)
        volume = getattr(inv.driver, primitive)(source.uuid, uuid, record)
        parent_ref = inv.request.get('vdi_ref') if m.flag(record, m.IS_SNAPSHOT) \
            else 'OpaqueRef:NULL'
        crash.point('fw.%s.before-introduce' % inv.command)
        _introduce_or_undo(inv, volume, record, parent_ref)
    return _vdi_info(uuid, uuid)


def vdi_snapshot(inv):
    source_uuid = inv.vdi_uuid
    return _copy(inv, 'snapshot', lambda src: m.merged(src, m.new(
        src.get(m.NAME, ''), src.get(m.DESCRIPTION, ''), src.get(m.TYPE) or 'user',
        True, True, source_uuid, _now())))


def vdi_clone(inv):
    return _copy(inv, 'clone', lambda src: m.merged(src, m.new(
        src.get(m.NAME, ''), src.get(m.DESCRIPTION, ''), src.get(m.TYPE) or 'user')))


def vdi_resize(inv):
    _require(inv, 'resize')
    cls = inv.driver_cls
    size = _check_vdi_size(cls, _parse_size(inv.request.args[0] if inv.request.args else None))
    location = inv.request.get('vdi_location')
    with sr_lock(inv.sr_uuid), vdi_lock(inv.vdi_uuid):
        volume = _volume(inv)
        if size < volume.virtual_size:
            raise SRError('VDISize', 'shrinking VDI %s from %d to %d bytes would lose data; '
                          'only growing is supported' % (inv.vdi_uuid, volume.virtual_size, size))
        if volume.read_only:
            raise SRError('VDIResize', 'VDI %s is read-only' % inv.vdi_uuid)
        if size > volume.virtual_size:
            if _attached_here(inv, location) and not cls.resize_online:
                raise SRError('VDIInUse', 'VDI %s is attached; %s SRs resize offline only'
                              % (inv.vdi_uuid, cls.name))
            volume.virtual_size = inv.driver.resize(location, size)
            volume = inv.driver.get(location) or volume
        crash.point('fw.vdi_resize.before-set-sizes')
        inv.xapi.set_vdi_sizes(inv.request.get('vdi_ref'), volume)
    return _vdi_info(inv.vdi_uuid, location)


def vdi_revert(inv):
    _require(inv, 'revert')
    args = inv.request.args
    if not args:
        raise SRError('BadRequest', 'vdi_revert needs the VDI to revert as its argument')
    target_ref = args[0]
    target = inv.xapi.vdi_record(target_ref)
    with sr_lock(inv.sr_uuid), vdi_lock(target['uuid']):
        snapshot = _volume(inv)
        if _volume(inv, target['location']) is None:
            raise SRError('VDIMissing', target['location'])
        if _attached_here(inv, target['location']):
            raise SRError('VDIInUse', 'VDI %s is attached on this host' % target['uuid'])
        inv.driver.revert(target['location'], snapshot.uuid)
        crash.point('fw.vdi_revert.before-set-sizes')
        inv.xapi.set_vdi_sizes(target_ref, _volume(inv, target['location']))


# --- datapath ------------------------------------------------------------------------

def _attach(inv, location, writable):
    marker = _Marker(inv, location, 'attach')
    known = marker.read()
    if known and os.path.exists(known):
        path = known
    else:
        volume = _volume(inv, location)
        path = inv.driver.attach(location, writable and not volume.read_only)
        marker.write(path)
    return {
        'params': path,
        'params_nbd': '',
        'o_direct': True,
        'o_direct_reason': 'SR_NOT_SUPPORTED',
        'xenstore_data': {
            'vdi-uuid': inv.vdi_uuid or location,
            'mem-pool': inv.sr_uuid,
            'storage-type': inv.driver_cls.name.lower(),
            # a raw block device is served by kernel blkback, not tapdisk (vbd3)
            'backend-kind': 'vbd',
        },
    }


def _detach(inv, location):
    marker = _Marker(inv, location, 'attach')
    if marker.read() is None:
        return
    inv.driver.detach(location)
    marker.clear()


def vdi_attach(inv):
    with vdi_lock(inv.vdi_uuid):
        return _attach(inv, inv.request.get('vdi_location'),
                       _flag(inv.request.args[0] if inv.request.args else 'false'))


def vdi_detach(inv):
    with vdi_lock(inv.vdi_uuid):
        _detach(inv, inv.request.get('vdi_location'))


def vdi_activate(inv):
    _require(inv, 'activate')
    location = inv.request.get('vdi_location')
    writable = _flag(inv.request.args[0] if inv.request.args else 'false')
    with vdi_lock(inv.vdi_uuid):
        marker = _Marker(inv, location, 'active')
        if marker.read() is None:
            inv.driver.activate(location, writable)
            marker.write('rw' if writable else 'ro')


def vdi_deactivate(inv):
    _require(inv, 'activate')
    location = inv.request.get('vdi_location')
    with vdi_lock(inv.vdi_uuid):
        marker = _Marker(inv, location, 'active')
        if marker.read() is not None:
            inv.driver.deactivate(location)
            marker.clear()


def vdi_epoch_begin(inv):
    # reset-on-boot is not advertised, so xapi never needs a reset here
    return None


def vdi_epoch_end(inv):
    return None


def vdi_generate_config(inv):
    """A methodCall for vdi_attach_from_config, which static-vdis replays at boot."""
    if inv.driver.get(_check_location(inv.request.get('vdi_location'))) is None:
        # fail now, not at the next boot (sm: VDIUnavailable)
        raise SRError('VDIUnavailable', 'no VDI at location %s in SR %s'
                      % (inv.request.get('vdi_location'), inv.sr_uuid))
    return encode_call('vdi_attach_from_config', [{
        'command': 'vdi_attach_from_config',
        'device_config': inv.request.device_config,
        'sr_uuid': inv.sr_uuid,
        'vdi_uuid': inv.vdi_uuid,
        'vdi_location': inv.request.get('vdi_location'),
    }])


def vdi_attach_from_config(inv):
    location = inv.request.get('vdi_location') or inv.vdi_uuid
    with vdi_lock(inv.vdi_uuid):
        return _attach(inv, location, True)


def vdi_detach_from_config(inv):
    location = inv.request.get('vdi_location') or inv.vdi_uuid
    with vdi_lock(inv.vdi_uuid):
        _detach(inv, location)


def _unimplemented(inv):
    raise SRError('Unimplemented', '%s is not supported by %s SRs'
                  % (inv.command, inv.driver_cls.name))


HANDLERS = dict((name, globals()[name]) for name in (
    'sr_get_driver_info', 'sr_create', 'sr_delete', 'sr_attach', 'sr_detach', 'sr_scan',
    'sr_update', 'sr_probe', 'vdi_create', 'vdi_introduce', 'vdi_delete', 'vdi_update',
    'vdi_attach', 'vdi_detach', 'vdi_activate', 'vdi_deactivate', 'vdi_epoch_begin',
    'vdi_epoch_end', 'vdi_snapshot', 'vdi_clone', 'vdi_resize', 'vdi_revert',
    'vdi_generate_config', 'vdi_attach_from_config', 'vdi_detach_from_config'))
HANDLERS.update((name, _unimplemented) for name in UNIMPLEMENTED)

# Commands that run without a session (xapi gives none) and without an SR.
NO_SESSION = ('sr_get_driver_info', 'vdi_attach_from_config', 'vdi_detach_from_config')
NO_SR = ('sr_get_driver_info', 'sr_probe')


def new_uuid():
    # uuid4 by hand: importing the uuid module costs more than this whole call
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = ''.join('%02x' % x for x in b)
    return '%s-%s-%s-%s-%s' % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


class Invocation(object):
    """One command being served: the request plus lazily built driver and xapi."""

    def __init__(self, request, driver_cls, log):
        self.request = request
        self.command = request.command
        self.driver_cls = driver_cls
        self.log = log
        self.sr_uuid = request.get('sr_uuid')
        self.vdi_uuid = request.get('vdi_uuid')
        self._driver = None
        self._xapi = None
        declared = set(o.key for o in driver_cls.options if o.secret)
        for key, value in request.device_config.items():
            if is_sensitive(key) or key in declared:
                log.hide(value)

    @property
    def xapi(self):
        if self._xapi is None:
            from framework.xapi import Xapi
            self._xapi = Xapi(self.request.get('session_ref'), self.request.get('sr_ref'),
                              self.request.get('subtask_of'))
        return self._xapi

    @property
    def state_dir(self):
        path = os.path.join(_state_root(), self.sr_uuid or 'probe')
        if not os.path.isdir(path):
            os.makedirs(path, 0o700)
        return path

    @property
    def driver(self):
        if self._driver is None:
            self._driver = self._make_driver()
        return self._driver

    def _make_driver(self):
        dc = self.request.device_config

        def resolve(secret_uuid):
            if not self.xapi.available:
                raise SRError('SRUnavailable', 'a *_secret device-config key needs xapi, '
                              'which is not reachable for %s; use a file-based '
                              'credential for SRs that must attach at boot' % self.command)
            value = self.xapi.secret(secret_uuid)
            self.log.hide(value)
            return value
        config = validate(self.driver_cls.options, dc, resolve)
        for opt in self.driver_cls.options:
            if opt.secret:
                self.log.hide(config.get(opt.key))
        host_ref = self.request.get('host_ref')
        lookup = (lambda: self.xapi.host_uuid(host_ref)) if self.xapi.available and host_ref \
            else None
        ctx = contract.Context(self.state_dir, self.log, dc.get('SRmaster') == 'true', lookup)
        return self.driver_cls(self.sr_uuid, config, ctx)


def dispatch(request, driver_cls, log):
    command = request.command
    handler = HANDLERS.get(command)
    if handler is None:
        raise SRError('BadRequest', 'unknown command %r' % command)
    if command not in NO_SR and not request.get('sr_uuid'):
        raise SRError('BadRequest', '%s needs sr_uuid' % command)
    # both name lock files and state directories: never let them be paths
    for key in ('sr_uuid', 'vdi_uuid'):
        if request.get(key):
            _check_uuid(request.get(key), key)
    if command.startswith('vdi_') and command not in ('vdi_create', 'vdi_introduce') \
            and handler is not _unimplemented and not request.get('vdi_uuid'):
        raise SRError('BadRequest', '%s needs vdi_uuid' % command)
    if command in MASTER_ONLY and request.device_config.get('SRmaster') != 'true':
        raise SRError('SMGeneral', '%s runs only on the SR master' % command)
    if command not in NO_SESSION and handler is not _unimplemented:
        if not request.get('session_ref'):
            raise SRError('BadRequest', '%s needs session_ref' % command)
        from framework.xapi import prefetch
        prefetch()
    return handler(Invocation(request, driver_cls, log))
