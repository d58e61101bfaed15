"""Allocated and changed ranges of a zvol, read from the records of a ``zfs send`` stream.

A full stream of a snapshot has a WRITE record for every allocated block of the
volume's data object and FREE records for the holes; an incremental stream
(``-i base``) has WRITE records for blocks written since ``base`` and FREE records
for holes. FREE is conservative: ZFS sends every hole under a rewritten indirect
block when it cannot tell its birth (``send_holes_without_birth_time``, on by default),
so a freed range changed only where ``base`` held data. Payloads are skipped,
never kept. Record layout: OpenZFS ``include/sys/zfs_ioctl.h`` (dmu_replay_record,
312 bytes, native byte order; a stream from this host is little-endian on x86).
"""

import struct

RECORD = 312
MAGIC = 0x2F5BACBAC
ZVOL_OBJ = 1           # a zvol's data lives in object 1 (object 2 holds its size)

BEGIN, OBJECT, FREEOBJECTS, WRITE, FREE, END, WRITE_BYREF, SPILL, WRITE_EMBEDDED, \
    OBJECT_RANGE, REDACT = range(11)
ALL_ONES = 0xFFFFFFFFFFFFFFFF


def _round8(n):
    return (n + 7) & ~7


def _payload(kind, rec):
    """Bytes that follow the record header, by record type."""
    if kind == BEGIN:
        return struct.unpack_from('<I', rec, 4)[0]
    if kind == OBJECT:
        bonuslen, raw_bonuslen = struct.unpack_from('<I', rec, 28)[0], \
            struct.unpack_from('<I', rec, 36)[0]
        return raw_bonuslen if raw_bonuslen else _round8(bonuslen)
    if kind == WRITE:
        logical, = struct.unpack_from('<Q', rec, 32)
        compression = rec[50]
        compressed, = struct.unpack_from('<Q', rec, 136)
        return compressed if compression else logical
    if kind == WRITE_EMBEDDED:
        return _round8(struct.unpack_from('<I', rec, 52)[0])
    if kind == SPILL:
        length, = struct.unpack_from('<Q', rec, 16)
        compression = rec[34]
        compressed, = struct.unpack_from('<Q', rec, 40)
        return compressed if compression else length
    return 0


def _read_exact(f, n):
    chunks = []
    while n > 0:
        block = f.read(min(n, 1 << 20))
        if not block:
            raise ValueError('zfs send stream ended inside a record')
        chunks.append(block)
        n -= len(block)
    return b''.join(chunks)


def _skip(f, n):
    while n > 0:
        block = f.read(min(n, 1 << 20))
        if not block:
            raise ValueError('zfs send stream ended inside a payload')
        n -= len(block)


def records(f):
    """Yield (kind, offset, length) for WRITE/WRITE_EMBEDDED/FREE of the zvol's data."""
    first = True
    while True:
        rec = f.read(RECORD)
        if not rec:
            return
        if len(rec) < RECORD:
            rec += _read_exact(f, RECORD - len(rec))
        kind, = struct.unpack_from('<I', rec, 0)
        if first:
            if kind != BEGIN or struct.unpack_from('<Q', rec, 8)[0] != MAGIC:
                raise ValueError('not a native-endian zfs send stream')
            first = False
        if kind in (WRITE, WRITE_EMBEDDED, FREE):
            obj, = struct.unpack_from('<Q', rec, 8)
            if kind == WRITE:
                offset, length = struct.unpack_from('<QQ', rec, 24)
            else:
                offset, length = struct.unpack_from('<QQ', rec, 16)
            if obj == ZVOL_OBJ:
                yield kind, offset, length
        _skip(f, _payload(kind, rec))
        if kind == END:
            # a non-recursive stream has one BEGIN/END pair
            return


def merge(ranges, size):
    """Sorted, coalesced [(offset, length)] clipped to ``size``."""
    out = []
    for offset, length in sorted(ranges):
        if length == ALL_ONES or offset + length > size:
            length = size - offset
        if length <= 0:
            continue
        if out and out[-1][0] + out[-1][1] >= offset:
            end = max(out[-1][0] + out[-1][1], offset + length)
            out[-1] = (out[-1][0], end - out[-1][0])
        else:
            out.append((offset, length))
    return out


def allocated(f, size):
    """Ranges holding data, from a full stream."""
    return merge([(o, n) for k, o, n in records(f) if k != FREE], size)


def split(f, size):
    """(written, freed) ranges of an incremental stream."""
    written, freed = [], []
    for kind, offset, length in records(f):
        (freed if kind == FREE else written).append((offset, length))
    return merge(written, size), merge(freed, size)


def intersect(a, b):
    """Overlap of two sorted, coalesced range lists."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start = max(a[i][0], b[j][0])
        end = min(a[i][0] + a[i][1], b[j][0] + b[j][1])
        if start < end:
            out.append((start, end - start))
        if a[i][0] + a[i][1] < b[j][0] + b[j][1]:
            i += 1
        else:
            j += 1
    return out
