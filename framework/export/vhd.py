"""VHD (dynamic, and differencing for deltas) as a stream, after the VHD
specification: footer copy, dynamic header, BAT, [parent locator], blocks in
disk order (sector bitmap + 2 MiB of data each), footer.

The creator application is "tap\\0", as XCP-ng's vhd-util writes: qemu trusts the
footer's current size only for known creators and otherwise derives it from the
CHS geometry, which would shrink the disk it reads.
"""

import struct
import time

from framework.errors import SRError
from framework.export.compress import corrupt

UNIT = BLOCK = 2 * 1024 * 1024
SECTOR = 512
MAX_SIZE = 2040 * 1024 ** 3
BITMAP = 512                       # 4096 sectors per block -> 512 bytes, one sector
FOOTER = 512
DYN_HEADER = 1024
VHD_EPOCH = 946684800              # 2000-01-01T00:00:00Z
DYNAMIC, DIFFERENCING = 3, 4
UNUSED = 0xFFFFFFFF
_FULL_BITMAP = b'\xff' * BITMAP
_ZERO_BLOCK = bytes(BLOCK)


def _checksum(data):
    return ~sum(bytearray(data)) & 0xFFFFFFFF


def geometry(size):
    """(cylinders, heads, sectors per track) as the VHD specification computes them."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def uuid_bytes(text):
    try:
        return bytes.fromhex(text.replace('-', ''))[:16].ljust(16, b'\0')
    except ValueError:
        return bytes(16)


def uuid_text(raw):
    h = raw.hex()
    return '%s-%s-%s-%s-%s' % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def footer(size, disk_type, unique_id, timestamp):
    c, h, s = geometry(size)
    fields = struct.pack('>8sIIQI4sI4sQQHBBII16sB', b'conectix', 2, 0x00010000, FOOTER,
                         timestamp, b'tap\0', 0x00010003, b'Lnux', size, size, c, h, s,
                         disk_type, 0, unique_id, 0)
    data = fields.ljust(FOOTER, b'\0')
    return data[:64] + struct.pack('>I', _checksum(data)) + data[68:]


class Writer(object):
    supports_delta = True

    def __init__(self, out, virtual_size, runs, parent=None, unique_id=''):
        """``parent``: None, or {'uuid':, 'name':} of the image a delta applies to."""
        if virtual_size > MAX_SIZE:
            raise SRError('VDISize', 'VHD holds at most 2040 GiB; this VDI has %d bytes: '
                          'export it as raw or qcow2' % virtual_size)
        self.out = out
        self.size = virtual_size
        entries = (virtual_size + BLOCK - 1) // BLOCK
        bat_bytes = (entries * 4 + SECTOR - 1) // SECTOR * SECTOR
        now = int(time.time()) - VHD_EPOCH
        kind = DIFFERENCING if parent else DYNAMIC
        self.footer = footer(virtual_size, kind, uuid_bytes(unique_id), now)
        locator = b''
        pos = FOOTER + DYN_HEADER + bat_bytes
        loc_entries = b''
        name = b''
        parent_id, parent_time = bytes(16), 0
        if parent:
            name = parent['name'].encode('utf-16-be')[:512]
            rel = ('.\\' + parent['name']).encode('utf-16-le')
            locator = rel.ljust(SECTOR, b'\0')
            loc_entries = struct.pack('>4sIIIQ', b'W2ru', SECTOR, len(rel), 0, pos)
            pos += len(locator)
            parent_id = uuid_bytes(parent['uuid'])
        dyn = struct.pack('>8sQQIII I16sII', b'cxsparse', 0xFFFFFFFFFFFFFFFF,
                          FOOTER + DYN_HEADER, 0x00010000, entries, BLOCK, 0,
                          parent_id, parent_time, 0)
        dyn += name.ljust(512, b'\0') + loc_entries.ljust(8 * 24, b'\0') + bytes(256)
        dyn = dyn[:36] + struct.pack('>I', _checksum(dyn)) + dyn[40:]
        bat = [UNUSED] * entries
        self.blocks = []
        for offset, length in runs:
            for index in range(offset // BLOCK, (offset + length + BLOCK - 1) // BLOCK):
                if bat[index] == UNUSED:
                    bat[index] = pos // SECTOR
                    self.blocks.append(index)
                    pos += BITMAP + BLOCK
        self.blocks.sort()
        out.write(self.footer + dyn + struct.pack('>%dI' % entries, *bat).ljust(bat_bytes, b'\0')
                  + locator)
        self.current = None      # index of the block being written
        self.filled = 0

    def data(self, offset, data):
        mv = memoryview(data)
        while mv:
            index, skew = divmod(offset, BLOCK)
            if index != self.current:
                self._finish_block()
                self.current, self.filled = index, 0
                self.out.write(_FULL_BITMAP)
            if skew > self.filled:
                self.out.write(memoryview(_ZERO_BLOCK)[:skew - self.filled])
                self.filled = skew
            take = min(BLOCK - skew, len(mv))
            self.out.write(mv[:take])
            self.filled += take
            offset += take
            mv = mv[take:]

    def _finish_block(self):
        if self.current is not None and self.filled < BLOCK:
            self.out.write(memoryview(_ZERO_BLOCK)[:BLOCK - self.filled])
            self.filled = BLOCK

    def close(self):
        self._finish_block()
        self.out.write(self.footer)


class Reader(object):
    def __init__(self, src, virtual_size=None):
        self.src = src
        head = src.read_exact(FOOTER, 'the VHD footer')
        self.footer = head
        if head[:8] != b'conectix' or struct.unpack('>I', head[64:68])[0] != \
                _checksum(head[:64] + bytes(4) + head[68:]):
            raise corrupt('bad VHD footer')
        (data_offset,) = struct.unpack('>Q', head[16:24])
        (self.virtual_size,) = struct.unpack('>Q', head[48:56])
        (disk_type,) = struct.unpack('>I', head[60:64])
        self.unique_id = uuid_text(head[68:84])
        if disk_type not in (DYNAMIC, DIFFERENCING):
            raise SRError('VDIUnavailable', 'VHD disk type %d is not supported for import '
                          '(dynamic and differencing are)' % disk_type)
        src.skip_to(data_offset, 'the VHD dynamic header')
        dyn = src.read_exact(DYN_HEADER, 'the VHD dynamic header')
        if dyn[:8] != b'cxsparse' or struct.unpack('>I', dyn[36:40])[0] != \
                _checksum(dyn[:36] + bytes(4) + dyn[40:]):
            raise corrupt('bad VHD dynamic header')
        table_offset, _, entries, self.block = struct.unpack('>QIII', dyn[16:36])
        if self.block % SECTOR or not self.block:
            raise corrupt('VHD block size %d' % self.block)
        self.is_delta = disk_type == DIFFERENCING
        self.parent = uuid_text(dyn[40:56]) if self.is_delta else ''
        src.skip_to(table_offset, 'the VHD block table')
        bat = struct.unpack('>%dI' % entries, src.read_exact(entries * 4, 'the VHD block table'))
        self.bat = sorted((sector * SECTOR, index) for index, sector in enumerate(bat)
                          if sector != UNUSED)
        self.bitmap_bytes = ((self.block // SECTOR + 7) // 8 + SECTOR - 1) // SECTOR * SECTOR

    def blocks(self):
        src, size = self.src, self.virtual_size
        for position, index in self.bat:
            src.skip_to(position, 'VHD block %d' % index)
            bitmap = src.read_exact(self.bitmap_bytes, 'a VHD block bitmap')
            data = src.read_exact(self.block, 'VHD block %d' % index)
            base = index * self.block
            for first, count in _runs(bitmap, self.block // SECTOR):
                start = base + first * SECTOR
                end = min(start + count * SECTOR, size)
                if start < end:
                    yield start, data[first * SECTOR:first * SECTOR + end - start]
        tail = b''
        while True:                            # the footer ends the file
            more = src.read(1024 * 1024)
            if not more:
                break
            tail = (tail + more)[-FOOTER:]
        if tail != self.footer:
            raise corrupt('the VHD does not end with its footer')


def _runs(bitmap, sectors):
    """[(first sector, count)] of the set bits (most significant bit first)."""
    if bitmap[:(sectors + 7) // 8] == b'\xff' * ((sectors + 7) // 8):
        return [(0, sectors)]
    runs, start = [], None
    for s in range(sectors):
        bit = bitmap[s >> 3] & (0x80 >> (s & 7))
        if bit and start is None:
            start = s
        elif not bit and start is not None:
            runs.append((start, s - start))
            start = None
    if start is not None:
        runs.append((start, sectors - start))
    return runs
