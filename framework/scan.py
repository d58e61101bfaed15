"""sr_scan: garbage collection, then xapi's VDIs made to match the backend.

The recovery path of every killed command (docs/crash-consistency.md): scan
introduces what xapi does not know, forgets what the backend lost, re-reads sizes.
"""

from framework import cbt
from framework import meta as m
from framework.locks import sr_lock
from framework.new_values import new_uuid


def update_sr_sizes(inv, volumes=None):
    if volumes is None:
        volumes = inv.driver.list()
    physical_size, physical_utilisation = inv.driver.sr_stats()
    allocation = sum(v.virtual_size for v in volumes.values())
    inv.xapi.set_sr_sizes(physical_size, physical_utilisation, allocation)


def sr_scan(inv):
    with sr_lock(inv.sr_uuid):
        inv.driver.collect_garbage()
        volumes = inv.driver.list()
        reconcile(inv, volumes)
        update_sr_sizes(inv, volumes)


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
        # the backend is the authority on tracking, as sm's scan (cbt_enabled)
        if 'cbt_enabled' in rec and bool(rec['cbt_enabled']) != cbt.enabled(volume.meta):
            xapi.set_cbt_enabled(ref, cbt.enabled(volume.meta))
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
