"""SMAPIv1 command semantics, written once on top of the driver primitives.

Each handler takes an ``Invocation`` and returns the reply value (None for
xapi's unit commands). Handlers address volumes by ``vdi_location`` (xapi's
key for the backend object), never by guessing from the VDI uuid.

This module holds the SR and VDI lifecycle commands and the dispatch; the command
being served is a framework.invocation.Invocation; sr_scan is in framework.scan, the
datapath in framework.datapath (both imported only when one of their commands comes),
CBT in framework.cbt, a request's fields in framework.request_fields, per-host markers
in framework.markers.
"""

from framework import cbt
from framework import crash
from framework import meta as m
from framework import driver as contract
from framework.errors import SRError
from framework.invocation import Invocation
from framework.locks import sr_lock, vdi_lock
from framework.markers import Marker, attached_here
from framework.options import configuration, is_sr_master
from framework.wire import xml_text
from framework.new_values import new_uuid, now
from framework.request_fields import (
    check_location, check_uuid, check_vdi_size, check_xml_text, flag, is_location,
    parse_size)

# Served by framework.datapath: xapi's plug and unplug of a VDI on one host.
DATAPATH = ('vdi_attach', 'vdi_detach', 'vdi_activate', 'vdi_deactivate', 'vdi_epoch_begin',
            'vdi_epoch_end', 'vdi_generate_config', 'vdi_attach_from_config',
            'vdi_detach_from_config')

MASTER_ONLY = ('sr_scan', 'vdi_create', 'vdi_delete', 'vdi_snapshot', 'vdi_clone',
               'vdi_resize', 'vdi_compose', 'vdi_enable_cbt', 'vdi_disable_cbt',
               'vdi_data_destroy', 'vdi_list_changed_blocks')

# Known to SMAPIv1 but not offered by srkit drivers: answered with Unimplemented (38).
# The CBT commands (framework.cbt) are too, for a driver without its primitives.
UNIMPLEMENTED = ('sr_content_type', 'vdi_compose', 'vdi_resize_online')

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


def sr_create(inv):
    from framework.scan import update_sr_sizes
    size = parse_size(inv.request.args[0] if inv.request.args else '0', 'physical size')
    with sr_lock(inv.sr_uuid):
        inv.driver.sr_create(size)
        update_sr_sizes(inv, {})


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
        busy = Marker.locations(inv, 'attach')
        if busy:
            raise SRError('SRInUse', 'VDI(s) still attached on this host: %s'
                          % ', '.join(busy))
        inv.driver.sr_detach()


def sr_update(inv):
    from framework.scan import update_sr_sizes
    with sr_lock(inv.sr_uuid):
        update_sr_sizes(inv)


def sr_probe(inv):
    inv.require('probe')
    found = inv.driver.probe()
    lines = ['<?xml version="1.0" ?>', '<SRlist>']
    for sr in found:
        lines.append('\t<SR>')
        for tag, key in (('UUID', 'uuid'), ('Size', 'size'), ('name_label', 'name_label'),
                         ('name_description', 'name_description'), ('Aggregate', 'aggregate')):
            if sr.get(key) not in (None, ''):
                lines.append('\t\t<%s>%s</%s>' % (tag, xml_text(str(sr[key])), tag))
        lines.append('\t</SR>')
    lines.append('</SRlist>')
    return '\n'.join(lines) + '\n'


# --- VDI commands ------------------------------------------------------------------

def vdi_create(inv):
    args = list(inv.request.args) + [''] * 8
    size = check_vdi_size(inv.driver_cls, parse_size(args[0]))
    name, description = args[1], args[2]
    check_xml_text(name, description)
    vdi_type = inv.request.get('vdi_type') or 'user'
    if vdi_type not in m.VDI_TYPES:
        raise SRError('VDIType', 'VDI type %r is not one of %s'
                      % (vdi_type, ', '.join(m.VDI_TYPES)))
    uuid = check_uuid(inv.request.get('vdi_uuid'), 'vdi_uuid') \
        if inv.request.get('vdi_uuid') else new_uuid()
    record = m.new(name, description, vdi_type, flag(args[7]), flag(args[4]),
                   '', args[5] or m.EPOCH)
    with sr_lock(inv.sr_uuid):
        if inv.driver.get(uuid) is not None:
            raise SRError('VDIExists', 'a VDI %s already exists in SR %s' % (uuid, inv.sr_uuid))
        volume = inv.driver.create(uuid, size, record)
        crash.point('fw.vdi_create.before-introduce')
        _introduce_or_undo(inv, volume, record)
    return _vdi_info(uuid, uuid)


def _vdi_info(uuid, location):
    return {'uuid': uuid, 'location': location}


def _introduce_or_undo(inv, volume, record, snapshot_of_ref='OpaqueRef:NULL'):
    try:
        return inv.xapi.introduce(volume, record, snapshot_of_ref)
    except Exception:
        # xapi will not know this volume: leave nothing behind on the backend
        inv.driver.destroy(volume.uuid)
        raise


def vdi_introduce(inv):
    location = inv.request.get('vdi_location')
    uuid = check_uuid(inv.request.get('new_uuid'), 'new_uuid') \
        if inv.request.get('new_uuid') else new_uuid()
    with sr_lock(inv.sr_uuid):
        # only a bad name means "nothing there"; a backend error must surface as itself
        volume = inv.driver.get(location) if is_location(location) else None
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
    location = check_location(inv.request.get('vdi_location'))
    with sr_lock(inv.sr_uuid), vdi_lock(inv.vdi_uuid):
        if attached_here(inv, location):
            raise SRError('VDIInUse', 'VDI %s is attached on this host' % inv.vdi_uuid)
        if inv.driver.get(location) is not None:
            inv.driver.destroy(location)
        else:
            inv.log.info('vdi_delete: %s already gone from the backend' % location)
        crash.point('fw.vdi_delete.before-forget')
        inv.xapi.forget(inv.request.get('vdi_ref'))


def vdi_update(inv):
    with vdi_lock(inv.vdi_uuid):
        volume = inv.volume_at()
        record = inv.xapi.vdi_record(inv.request.get('vdi_ref'))
        check_xml_text(record.get('name_label', ''), record.get('name_description', ''))
        parent = record.get('snapshot_of') or ''
        parent_uuid = inv.xapi.vdi_uuid_if_known(parent) \
            if parent.startswith('OpaqueRef:') and parent != 'OpaqueRef:NULL' else ''
        current = m.from_record(record, lambda ref: parent_uuid or '')
        if parent_uuid is None:  # the parent is gone: keep the relation the backend has
            current[m.SNAPSHOT_OF] = volume.meta.get(m.SNAPSHOT_OF, '')
        wanted = m.merged(volume.meta, current)
        if wanted != volume.meta:
            inv.driver.set_meta(volume.uuid, wanted)


def _copy(inv, primitive, make_meta):
    inv.require(primitive)
    with sr_lock(inv.sr_uuid), vdi_lock(inv.vdi_uuid):
        source = inv.volume_at()
        cbt.refuse_destroyed(source, inv.command)
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
    return _copy(inv, 'snapshot', lambda src: cbt.for_snapshot(m.merged(src, m.new(
        src.get(m.NAME, ''), src.get(m.DESCRIPTION, ''), src.get(m.TYPE) or 'user',
        True, True, source_uuid, now()))))


def vdi_clone(inv):
    return _copy(inv, 'clone', lambda src: cbt.for_clone(m.merged(src, m.new(
        src.get(m.NAME, ''), src.get(m.DESCRIPTION, ''), src.get(m.TYPE) or 'user'))))


def vdi_resize(inv):
    inv.require('resize')
    cls = inv.driver_cls
    size = check_vdi_size(cls, parse_size(inv.request.args[0] if inv.request.args else None))
    location = inv.request.get('vdi_location')
    with sr_lock(inv.sr_uuid), vdi_lock(inv.vdi_uuid):
        volume = inv.volume_at()
        if size < volume.virtual_size:
            raise SRError('VDISize', 'shrinking VDI %s from %d to %d bytes would lose data; '
                          'only growing is supported' % (inv.vdi_uuid, volume.virtual_size, size))
        if volume.read_only:
            raise SRError('VDIResize', 'VDI %s is read-only' % inv.vdi_uuid)
        if size > volume.virtual_size:
            if attached_here(inv, location) and not cls.resize_online:
                raise SRError('VDIInUse', 'VDI %s is attached; %s SRs resize offline only'
                              % (inv.vdi_uuid, cls.name))
            volume.virtual_size = inv.driver.resize(location, size)
            volume = inv.driver.get(location) or volume
        crash.point('fw.vdi_resize.before-set-sizes')
        inv.xapi.set_vdi_sizes(inv.request.get('vdi_ref'), volume)
    return _vdi_info(inv.vdi_uuid, location)


def vdi_revert(inv):
    inv.require('revert')
    args = inv.request.args
    if not args:
        raise SRError('BadRequest', 'vdi_revert needs the VDI to revert as its argument')
    target_ref = args[0]
    target = inv.xapi.vdi_record(target_ref)
    with sr_lock(inv.sr_uuid), vdi_lock(target['uuid']):
        snapshot = inv.volume_at()
        cbt.refuse_destroyed(snapshot, 'vdi_revert')
        if inv.volume_at(target['location']) is None:
            raise SRError('VDIMissing', target['location'])
        if attached_here(inv, target['location']):
            raise SRError('VDIInUse', 'VDI %s is attached on this host' % target['uuid'])
        inv.driver.revert(target['location'], snapshot.uuid)
        crash.point('fw.vdi_revert.before-set-sizes')
        inv.xapi.set_vdi_sizes(target_ref, inv.volume_at(target['location']))


def _unimplemented(inv):
    raise SRError('Unimplemented', '%s is not supported by %s SRs'
                  % (inv.command, inv.driver_cls.name))


def _served_by(module, command):
    """The handler ``command`` of ``module``, imported when the command comes."""
    def handler(inv):
        return getattr(__import__(module, fromlist=[command]), command)(inv)
    handler.__name__ = command
    return handler


HANDLERS = dict((name, globals()[name]) for name in (
    'sr_get_driver_info', 'sr_create', 'sr_delete', 'sr_attach', 'sr_detach',
    'sr_update', 'sr_probe', 'vdi_create', 'vdi_introduce', 'vdi_delete', 'vdi_update',
    'vdi_snapshot', 'vdi_clone', 'vdi_resize', 'vdi_revert'))
HANDLERS['sr_scan'] = _served_by('framework.scan', 'sr_scan')
HANDLERS.update((name, _served_by('framework.datapath', name)) for name in DATAPATH)
HANDLERS.update((name, _unimplemented) for name in UNIMPLEMENTED)
HANDLERS.update(cbt.HANDLERS)

# Commands that run without a session (xapi gives none) and without an SR.
NO_SESSION = ('sr_get_driver_info', 'vdi_attach_from_config', 'vdi_detach_from_config')
NO_SR = ('sr_get_driver_info', 'sr_probe')


def dispatch(request, driver_cls, log):
    command = request.command
    handler = HANDLERS.get(command)
    if handler is None:
        raise SRError('BadRequest', 'unknown command %r' % command)
    if command in cbt.COMMANDS and not cbt.offered(driver_cls):
        handler = _unimplemented
    if command not in NO_SR and not request.get('sr_uuid'):
        raise SRError('BadRequest', '%s needs sr_uuid' % command)
    # both name lock files and state directories: never let them be paths
    for key in ('sr_uuid', 'vdi_uuid'):
        if request.get(key):
            check_uuid(request.get(key), key)
    if command.startswith('vdi_') and command not in ('vdi_create', 'vdi_introduce') \
            and handler is not _unimplemented and not request.get('vdi_uuid'):
        raise SRError('BadRequest', '%s needs vdi_uuid' % command)
    if command in MASTER_ONLY and not is_sr_master(request.device_config):
        raise SRError('SMGeneral', '%s runs only on the SR master' % command)
    if command not in NO_SESSION and handler is not _unimplemented:
        if not request.get('session_ref'):
            raise SRError('BadRequest', '%s needs session_ref' % command)
    return handler(Invocation(request, driver_cls, log))
