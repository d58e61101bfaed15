"""Changed block tracking (CBT): the four SMAPIv1 commands, the bitmap, the state record.

xapi's incremental backup asks ``VDI.list_changed_blocks(from, to)`` for a bitmap
of the 64 KiB blocks that differ, reads those over NBD, then ``VDI.data_destroy``s
``from`` so only its tracking metadata stays (type ``cbt_metadata``). sm keeps a
write log per VDI in tapdisk for this; srkit keeps none: the backends already know
their own diffs (``changed_extents``, the same primitive the delta export uses), so
the bitmap is computed from content, and a revert or a crash cannot desynchronise a
log that does not exist.

What the framework owns (docs/cbt.md): the state record in the VDI's metadata, the
bitmap (one bit per 64 KiB block of vdi_to, most significant bit first, exactly
ceil(size / 64 KiB) bits, padded to whole bytes, base64), the relation check, the
refusals on a data-destroyed VDI, locks and crash points. A driver offers CBT by
implementing ``changed_extents`` and ``data_destroy`` (driver.py).

The record, flat keys next to framework.meta's (they survive every merge there):

- ``cbt_enabled``   'true' while tracking is on; inherited by snapshots, not clones
                    (xapi: ``Xapi_vdi.snapshot`` copies cbt_enabled, clone clears it)
- ``cbt_epoch``     a uuid drawn at each enable: disable then enable starts a new
                    backup set, and VDIs of two sets are unrelated (sm: fault 460)
- ``cbt_stamp``     on a snapshot, when it was taken: orders the snapshots of a set
- ``cbt_data_destroyed``  'true' once vdi_data_destroy ran; the VDI is then only
                    tracking metadata: no attach, snapshot, clone, revert or export
"""

import time

from framework import crash
from framework import driver as contract
from framework import meta as m
from framework.errors import SRError
from framework.locks import sr_lock, vdi_lock
from framework.markers import attached_here
from framework.new_values import new_uuid
from framework.request_fields import check_location

BLOCK = 64 * 1024          # VDI.CBT_BLOCK_SIZE in sm, 64 KiB in xapi's docs

ENABLED = 'cbt_enabled'
EPOCH = 'cbt_epoch'
STAMP = 'cbt_stamp'
DESTROYED = 'cbt_data_destroyed'
KEYS = (ENABLED, EPOCH, STAMP, DESTROYED)
METADATA_TYPE = 'cbt_metadata'   # xapi's VDI type of a data-destroyed snapshot

COMMANDS = ('vdi_enable_cbt', 'vdi_disable_cbt', 'vdi_data_destroy',
            'vdi_list_changed_blocks')
PRIMITIVES = ('changed_extents', 'data_destroy')


def offered(driver_cls):
    """Whether the driver offers CBT (VDI_CONFIG_CBT): it implements both primitives."""
    return all(contract.implements(driver_cls, p) for p in PRIMITIVES)


# --- the state record --------------------------------------------------------------

def enabled(meta):
    return meta.get(ENABLED) == 'true'


def data_destroyed(meta):
    return meta.get(DESTROYED) == 'true'


def vdi_type(meta):
    """The type xapi should show: a data-destroyed VDI is cbt_metadata even when a
    scan or vdi_update copied xapi's older type over the stored one."""
    return METADATA_TYPE if data_destroyed(meta) else (meta.get(m.TYPE) or 'user')


def for_snapshot(meta):
    """A snapshot's record: it joins its VDI's backup set, stamped to order it."""
    out = dict(meta)
    out.pop(DESTROYED, None)
    if enabled(meta):
        out[STAMP] = '%.6f' % time.time()
    else:
        for key in KEYS:
            out.pop(key, None)
    return out


def for_clone(meta):
    """A clone's record: a new disk, CBT off (xapi clears cbt_enabled on clones)."""
    out = dict(meta)
    for key in KEYS:
        out.pop(key, None)
    return out


def refuse_destroyed(volume, what):
    """A data-destroyed VDI has no data to attach, copy or roll back to."""
    if data_destroyed(volume.meta):
        raise SRError('VDIType', 'VDI %s is a cbt_metadata VDI (its data was destroyed): '
                      'it cannot be used for %s' % (volume.uuid, what))


# --- the bitmap ----------------------------------------------------------------------

def bitmap(extents, size, grown_from=None):
    """bytearray: one bit per BLOCK of ``size`` bytes, MSB first, set where an extent
    touches the block; with ``grown_from`` (vdi_from's size) every block from there
    to ``size`` is set too: what lies past the old end is new to a backup."""
    nbits = (int(size) + BLOCK - 1) // BLOCK
    bits = bytearray((nbits + 7) // 8)
    runs = list(extents)
    if grown_from is not None and grown_from < size:
        runs.append((grown_from, size - grown_from))
    for offset, length in runs:
        end = min(int(offset) + int(length), int(size))
        if length <= 0 or offset >= end:
            continue
        _set(bits, int(offset) // BLOCK, (end - 1) // BLOCK)
    return bits


def _set(bits, first, last):
    """Set bits first..last (inclusive), MSB first within each byte."""
    fb, lb = first >> 3, last >> 3
    head = 0xFF >> (first & 7)
    tail = (0xFF << (7 - (last & 7))) & 0xFF
    if fb == lb:
        bits[fb] |= head & tail
        return
    bits[fb] |= head
    if lb - fb > 1:
        bits[fb + 1:lb] = b'\xff' * (lb - fb - 1)
    bits[lb] |= tail


def encode(bits):
    import binascii
    return binascii.b2a_base64(bytes(bits)).decode('ascii').strip()


# --- the commands ----------------------------------------------------------------------

def _require(inv):
    if not offered(inv.driver_cls):
        raise SRError('Unimplemented', '%s SRs do not support %s'
                      % (inv.driver_cls.name, inv.command))


def _refuse_snapshot(volume, command):
    if m.flag(volume.meta, m.IS_SNAPSHOT) or volume.read_only:
        # sm: configure_blocktracking refuses snapshots with VDIType
        raise SRError('VDIType', '%s: VDI %s is a snapshot; CBT is set on the VDI it '
                      'snapshots' % (command, volume.uuid))


def vdi_enable_cbt(inv):
    _require(inv)
    with vdi_lock(inv.vdi_uuid):
        volume = inv.volume_at()
        _refuse_snapshot(volume, inv.command)
        if enabled(volume.meta):
            return None          # xapi may repeat a command; sm returns too
        meta = m.merged(volume.meta, {ENABLED: 'true', EPOCH: new_uuid()})
        meta.pop(STAMP, None)
        inv.driver.set_meta(volume.uuid, meta)
        crash.point('fw.vdi_enable_cbt.after-set-meta')
    return None


def vdi_disable_cbt(inv):
    _require(inv)
    with vdi_lock(inv.vdi_uuid):
        volume = inv.volume_at()
        _refuse_snapshot(volume, inv.command)
        if not enabled(volume.meta) and EPOCH not in volume.meta:
            return None
        meta = dict(volume.meta)
        meta[ENABLED] = 'false'
        meta.pop(EPOCH, None)    # the backup set ends: its snapshots relate to no new one
        inv.driver.set_meta(volume.uuid, meta)
        crash.point('fw.vdi_disable_cbt.after-set-meta')
    return None


def vdi_data_destroy(inv):
    """Mark first, then free: a kill in between leaves a VDI nobody can attach whose
    space a repeated data_destroy frees (xapi sets type cbt_metadata only once this
    replies, so the user sees the command failed and repeats it)."""
    _require(inv)
    location = check_location(inv.request.get('vdi_location'))
    with sr_lock(inv.sr_uuid), vdi_lock(inv.vdi_uuid):
        volume = inv.volume_at()
        if not m.flag(volume.meta, m.IS_SNAPSHOT):
            # sm's VDI.data_destroy: 'Only allowed for snapshot VDIs'
            raise SRError('VDIType', 'data_destroy is only allowed for snapshot VDIs; '
                          '%s is not one' % volume.uuid)
        if not enabled(volume.meta):
            raise SRError('VDIType', 'snapshot %s has no CBT metadata (CBT was not enabled '
                          'when it was taken): destroy it instead' % volume.uuid)
        if attached_here(inv, location):
            raise SRError('VDIInUse', 'VDI %s is attached on this host' % volume.uuid)
        if not data_destroyed(volume.meta):
            meta = m.merged(volume.meta, {DESTROYED: 'true', m.TYPE: METADATA_TYPE})
            inv.driver.set_meta(location, meta)
            crash.point('fw.vdi_data_destroy.after-mark')
        inv.driver.data_destroy(location)
        crash.point('fw.vdi_data_destroy.after-free')
    return None


def _unrelated(detail):
    return SRError('CBTChangedBlocksError', 'Source and target VDI are unrelated: %s'
                   % detail)


def check_related(source, target):
    """Raise 460 unless ``target`` follows ``source`` in one backup set: both tracked,
    same epoch, source a snapshot taken before target (the live VDI is the newest)."""
    if not enabled(source.meta) or not enabled(target.meta):
        raise _unrelated('CBT is not enabled on %s' % (
            source.uuid if not enabled(source.meta) else target.uuid))
    if source.meta.get(EPOCH) != target.meta.get(EPOCH) or not source.meta.get(EPOCH):
        raise _unrelated('they belong to different CBT sets (CBT was disabled and '
                         're-enabled in between, or they are different disks)')
    stamp = source.meta.get(STAMP)
    if not m.flag(source.meta, m.IS_SNAPSHOT) or not stamp:
        raise _unrelated('%s is not a snapshot taken with CBT on' % source.uuid)
    if m.flag(target.meta, m.IS_SNAPSHOT):
        later = target.meta.get(STAMP)
        if not later or float(later) <= float(stamp):
            raise _unrelated('%s was not taken after %s' % (target.uuid, source.uuid))


def vdi_list_changed_blocks(inv):
    _require(inv)
    args = inv.request.args
    if not args:
        raise SRError('BadRequest', 'vdi_list_changed_blocks needs the ref of vdi_to')
    source_location = check_location(inv.request.get('vdi_location'))
    record = inv.xapi.vdi_record(args[0])
    if record.get('SR') and inv.xapi.sr_ref and record.get('SR') != inv.xapi.sr_ref:
        raise _unrelated('VDI %s is in another SR' % record.get('uuid'))
    target_location = record.get('location') or ''
    if record.get('uuid') == inv.vdi_uuid or target_location == source_location:
        raise SRError('CBTChangedBlocksError', 'Source and target VDI are same')
    target_location = check_location(target_location)
    uuids = sorted(set([inv.vdi_uuid or source_location, record.get('uuid') or
                        target_location]))
    with vdi_lock(uuids[0]), vdi_lock(uuids[1]):
        source = inv.volume_at(source_location)
        target = inv.volume_at(target_location)
        check_related(source, target)
        extents = inv.driver.changed_extents(target_location, source_location)
        return encode(bitmap(extents, target.virtual_size, source.virtual_size))


HANDLERS = {
    'vdi_enable_cbt': vdi_enable_cbt,
    'vdi_disable_cbt': vdi_disable_cbt,
    'vdi_data_destroy': vdi_data_destroy,
    'vdi_list_changed_blocks': vdi_list_changed_blocks,
}
