"""The datapath commands: attach, activate and their undoing, on this host.

Each is idempotent through a per-host marker (framework.markers): xapi may repeat
them, e.g. after a toolstack restart.
"""

from framework.cbt import refuse_destroyed
from framework.errors import SRError
from framework.locks import vdi_lock
from framework.markers import Marker
from framework.request_fields import check_location, flag
from framework.wire import encode_call


def attach_location(inv, location, writable):
    """vdi_attach's work and this host's attach marker, shared with the export pipeline
    so both agree on which device a VDI has here."""
    marker = Marker(inv, location, 'attach')
    known = marker.read()
    if known and inv.driver.device_alive(location, known):
        path = known
    else:
        volume = inv.volume_at(location)
        refuse_destroyed(volume, 'attach')   # vdi_attach and the export pipeline
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


def detach_location(inv, location):
    marker = Marker(inv, location, 'attach')
    if marker.read() is None:
        return
    inv.driver.detach(location)
    marker.clear()


def vdi_attach(inv):
    with vdi_lock(inv.vdi_uuid):
        return attach_location(inv, inv.request.get('vdi_location'),
                               flag(inv.request.args[0] if inv.request.args else 'false'))


def vdi_detach(inv):
    with vdi_lock(inv.vdi_uuid):
        detach_location(inv, inv.request.get('vdi_location'))


def vdi_activate(inv):
    inv.require('activate')
    location = inv.request.get('vdi_location')
    writable = flag(inv.request.args[0] if inv.request.args else 'false')
    with vdi_lock(inv.vdi_uuid):
        marker = Marker(inv, location, 'active')
        if marker.read() is None:
            inv.driver.activate(location, writable)
            marker.write('rw' if writable else 'ro')


def vdi_deactivate(inv):
    inv.require('activate')
    location = inv.request.get('vdi_location')
    with vdi_lock(inv.vdi_uuid):
        marker = Marker(inv, location, 'active')
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
    if inv.driver.get(check_location(inv.request.get('vdi_location'))) is None:
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
        return attach_location(inv, location, True)


def vdi_detach_from_config(inv):
    location = inv.request.get('vdi_location') or inv.vdi_uuid
    with vdi_lock(inv.vdi_uuid):
        detach_location(inv, location)
