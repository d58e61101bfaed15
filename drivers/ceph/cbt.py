"""CBT on RBD: what vdi_data_destroy keeps of a snapshot (docs/ceph.md, docs/cbt.md).

The bitmap comes from ``rbd diff`` (diff_iterate) between two RBD snapshots of the
VDI's image, which needs both snapshots: RBD cannot drop a snapshot's blocks and
keep the ability to diff against it. data_destroy therefore keeps the RBD snapshot
(copy-on-write: it holds only the blocks the VDI overwrote since) and frees
nothing; the framework has marked the VDI cbt_metadata, so it is never attached,
cloned or exported again. Destroying the VDI (xapi: VDI.destroy of the
cbt_metadata snapshot, as backup tools do when it leaves the retention) removes
the RBD snapshot and frees those blocks."""

from framework.errors import SRError
from drivers.ceph import layout as L


def data_destroy(driver, uuid):
    entry = driver._need(uuid)
    if entry.kind != L.SNAP:
        raise SRError('VDIType', 'VDI %s is not an RBD snapshot: data_destroy is only '
                      'for snapshots' % uuid)
    driver.ctx.log.info('data_destroy %s: RBD snapshot %s@%s kept as the diff base of '
                        'CBT' % (uuid, entry.image, entry.snap))
