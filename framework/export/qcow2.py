"""qcow2 version 3 as a stream: every table is laid out before the first data
cluster, so the file is written front to back in one pass, and read the same way.

Layout: header cluster (with the backing file name of a delta), L1 table,
refcount table, refcount blocks, L2 tables, data clusters in disk order. Every
cluster has refcount 1, so L1/L2 entries carry QCOW_OFLAG_COPIED as qemu-img
check expects.
"""

import heapq
import struct

from framework.errors import SRError
from framework.export.compress import corrupt

CLUSTER_BITS = 16
CLUSTER = UNIT = 1 << CLUSTER_BITS
L2_ENTRIES = CLUSTER // 8
REFS_PER_BLOCK = CLUSTER // 2      # refcount_order 4: 16-bit refcounts
COPIED = 1 << 63
COMPRESSED = 1 << 62
ZERO_FLAG = 1
OFFSET_MASK = 0x00FFFFFFFFFFFE00
HEADER_LENGTH = 104
BACKING_FORMAT_EXT = 0xE2792ACA
_ZERO = bytes(CLUSTER)


def _clusters(nbytes):
    return (nbytes + CLUSTER - 1) // CLUSTER


class Writer(object):
    supports_delta = True

    def __init__(self, out, virtual_size, runs, parent=None, unique_id=''):
        self.out = out
        data = []
        for offset, length in runs:
            data.extend(range(offset // CLUSTER, _clusters(offset + length)))
        data = sorted(set(data))
        l2_needed = sorted(set(c // L2_ENTRIES for c in data))
        l1_size = max(1, (_clusters(virtual_size) + L2_ENTRIES - 1) // L2_ENTRIES)
        l1_clusters = _clusters(l1_size * 8)
        fixed = 1 + l1_clusters + len(l2_needed) + len(data)
        ref_blocks = ref_table = 1
        while True:   # the refcount structures count themselves
            total = fixed + ref_table + ref_blocks
            blocks = (total + REFS_PER_BLOCK - 1) // REFS_PER_BLOCK
            table = _clusters(blocks * 8)
            if (blocks, table) == (ref_blocks, ref_table):
                break
            ref_blocks, ref_table = blocks, table
        l1_at = 1
        ref_table_at = l1_at + l1_clusters
        ref_blocks_at = ref_table_at + ref_table
        l2_at = ref_blocks_at + ref_blocks
        data_at = l2_at + len(l2_needed)

        head = struct.pack('>4sIQIIQIIQQIIQQQQII', b'QFI\xfb', 3, 0, 0, CLUSTER_BITS,
                           virtual_size, 0, l1_size, l1_at * CLUSTER,
                           ref_table_at * CLUSTER, ref_table, 0, 0, 0, 0, 0, 4, HEADER_LENGTH)
        if parent:
            fmt = b'qcow2'
            head += struct.pack('>II', BACKING_FORMAT_EXT, len(fmt)) + fmt.ljust(8, b'\0')
        head += struct.pack('>II', 0, 0)
        if parent:
            name = parent['name'].encode('utf-8')
            head = head[:8] + struct.pack('>QI', len(head), len(name)) + head[20:] + name
        l1 = [0] * l1_size
        for i, l2 in enumerate(l2_needed):
            l1[l2] = ((l2_at + i) * CLUSTER) | COPIED
        ref_table_entries = [(ref_blocks_at + i) * CLUSTER for i in range(ref_blocks)]
        l2_tables = dict((l2, [0] * L2_ENTRIES) for l2 in l2_needed)
        for i, c in enumerate(data):
            l2_tables[c // L2_ENTRIES][c % L2_ENTRIES] = ((data_at + i) * CLUSTER) | COPIED
        total = data_at + len(data)
        refs = bytearray(ref_blocks * CLUSTER)
        struct.pack_into('>%dH' % total, refs, 0, *([1] * total))

        def table(values, nclusters):
            return struct.pack('>%dQ' % len(values), *values).ljust(nclusters * CLUSTER, b'\0')
        out.write(head.ljust(CLUSTER, b'\0'))
        out.write(table(l1, l1_clusters))
        out.write(table(ref_table_entries, ref_table))
        out.write(bytes(refs))
        for l2 in l2_needed:
            out.write(table(l2_tables[l2], 1))
        self.size = virtual_size
        self.partial = 0     # bytes written into the current cluster

    def data(self, offset, data):
        # runs are cluster-aligned and given in order: only the disk's last cluster is short
        self.out.write(data)
        self.partial = (self.partial + len(data)) % CLUSTER

    def close(self):
        if self.partial:
            self.out.write(memoryview(_ZERO)[:CLUSTER - self.partial])
            self.partial = 0


class Reader(object):
    """Reads a qcow2 whose tables come before the clusters they point to (srkit's
    layout and most converters'); others are refused with a hint."""

    def __init__(self, src, virtual_size=None):
        self.src = src
        head = src.read_exact(HEADER_LENGTH, 'the qcow2 header')
        (magic, version, backing_off, backing_len, cluster_bits, self.virtual_size, crypt,
         l1_size, l1_off, _, _, nb_snap, _) = struct.unpack('>4sIQIIQIIQQIIQ', head[:72])
        if magic != b'QFI\xfb' or version not in (2, 3):
            raise corrupt('not a qcow2 header')
        if crypt or nb_snap:
            raise SRError('VDIUnavailable', 'encrypted qcow2 images and internal snapshots '
                          'are not supported for import')
        if version == 3:
            incompatible, = struct.unpack('>Q', head[72:80])
            if incompatible & ~0x0:
                raise SRError('VDIUnavailable', 'qcow2 incompatible features 0x%x (dirty, '
                              'external data, compression type or extended L2) are not '
                              'supported for import' % incompatible)
        self.cluster = 1 << cluster_bits
        self.is_delta = bool(backing_len)
        self.parent = ''
        if backing_len:
            src.skip_to(backing_off, 'the qcow2 backing file name')
            self.parent = src.read_exact(backing_len, 'the backing file name').decode(
                'utf-8', 'replace')
        self.l1 = (l1_off, l1_size)

    def blocks(self):
        src, cluster = self.src, self.cluster
        entries = cluster // 8
        pending = [(self.l1[0], 0, 'l1', 0)]
        zero = bytes(cluster)
        while pending:
            position, _, kind, guest = heapq.heappop(pending)
            src.skip_to(position, 'qcow2 %s' % kind)
            if kind == 'l1':
                l1 = struct.unpack('>%dQ' % self.l1[1],
                                   src.read_exact(self.l1[1] * 8, 'the qcow2 L1 table'))
                for i, entry in enumerate(l1):
                    if entry & OFFSET_MASK:
                        heapq.heappush(pending, (entry & OFFSET_MASK, 1, 'l2', i * entries))
            elif kind == 'l2':
                l2 = struct.unpack('>%dQ' % entries, src.read_exact(cluster, 'a qcow2 L2 table'))
                for i, entry in enumerate(l2):
                    index = guest + i
                    if entry & COMPRESSED:
                        raise SRError('VDIUnavailable', 'compressed qcow2 clusters are not '
                                      'supported for import')
                    if entry & ZERO_FLAG:
                        yield self._clip(index * cluster, zero)
                    elif entry & OFFSET_MASK:
                        heapq.heappush(pending, (entry & OFFSET_MASK, 2, 'data', index))
            else:
                # coalesce clusters that follow each other both in the file and on the disk
                count = 1
                while pending and count < 16 and pending[0][2] == 'data' and \
                        pending[0][0] == position + count * cluster and \
                        pending[0][3] == guest + count:
                    heapq.heappop(pending)
                    count += 1
                data = src.read_exact(count * cluster, 'qcow2 data')
                yield self._clip(guest * cluster, data)

    def _clip(self, offset, data):
        return offset, data[:max(0, self.virtual_size - offset)]
