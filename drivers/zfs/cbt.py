"""CBT on zfsvol: what vdi_data_destroy keeps of a snapshot (docs/zfs.md, docs/cbt.md).

The bitmap comes from ``changed_extents``: ``zfs send -i`` from the base snapshot
(blocks written since) plus the freed ranges bounded by the base's own allocation
(a send of the base alone). Both need the ZFS snapshot itself, so data_destroy keeps
it and frees nothing: the snapshot holds only the blocks the zvol overwrote since
(copy-on-write). The framework has marked the VDI cbt_metadata (its ``srkit:meta``
on the snapshot), so it is never attached, cloned or exported again; destroying the
VDI destroys the snapshot and frees those blocks."""

from framework.errors import SRError


def data_destroy(driver, uuid):
    row = driver._need(uuid)
    if row.type != 'snapshot':
        raise SRError('VDIType', 'VDI %s is not a ZFS snapshot: data_destroy is only '
                      'for snapshots' % uuid)
    driver.ctx.log.info('data_destroy %s: ZFS snapshot %s kept as the base of CBT'
                        % (uuid, row.name))
