"""Extents and CBT on RBD: what is allocated or changed (export, changed_extents),
and what vdi_data_destroy keeps of a snapshot (docs/ceph.md, docs/cbt.md).

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


def data_destroy(entry, log):
    """vdi_data_destroy of the VDI ``entry``: refused unless it is a snapshot."""
    if entry.kind != L.SNAP:
        raise SRError('VDIType', 'VDI %s is not an RBD snapshot: data_destroy is only '
                      'for snapshots' % entry.uuid)
    log.info('data_destroy %s: RBD snapshot %s@%s kept as the diff base of '
             'CBT' % (entry.uuid, entry.image, entry.snap))


def diff(img, from_snap, size):
    """Extents written since ``from_snap`` (None: allocated ones), by fast-diff (the
    object map, no I/O) in whole objects. Since a snapshot they are then made
    exact: a byte-exact diff (one list-snaps per object) of the changed objects
    only. Whole objects alone made a delta of 1 MiB writes read 4x the changed
    bytes; exact diffs alone cost a request for every object of the image."""
    def collect(into, discards=False):
        # since a snapshot, a discarded range changed too (it reads zeros now):
        # a delta or a CBT bitmap without it would keep the old data
        def cb(offset, length, exists):
            if exists or discards:
                if into and into[-1][0] + into[-1][1] == offset:
                    into[-1] = (into[-1][0], into[-1][1] + length)
                else:
                    into.append((offset, length))
            return 0
        return cb
    objects, extents = [], []
    since = from_snap is not None
    img.diff_iterate(0, size, from_snap, collect(objects, since), include_parent=True,
                     whole_object=True)
    if not since:
        return objects
    for offset, length in objects:
        img.diff_iterate(offset, length, from_snap, collect(extents, True),
                         include_parent=True, whole_object=False)
    return extents
