"""srkit's metadata around an image stream, and the digest of logical disk content.

A zstd export is::

    skippable frame  'SRKIT1H' + JSON header (format, sizes, source, base)
    zstd frame(s)    the image file (raw, vhd or qcow2), with XXH64 checksums
    skippable frame  'SRKIT1T' + JSON trailer (digest, byte counts)

Skippable frames are part of the zstd format: ``zstd -d`` drops them, so the
decompressed output is exactly the image file that qemu-img reads. With
compression ``none`` the image file is written bare and the same metadata goes
to a sidecar ``<file>.srkit`` (nothing, when writing to stdout).

The digest covers logical content, not the file: the disk is cut into 64 KiB
chunks; each chunk that is not all zero contributes sha256(offset || chunk),
and the digest is the sum of those modulo 2**256. It does not depend on the
image format, on how sparse the writer was, or on the order a reader meets the
data, so an import recomputes it from what it writes. For a delta it covers the
chunks the delta carries.
"""

import hashlib
import json
import struct

from framework.errors import SRError
from framework.export.compress import SKIPPABLE_MAGIC

HEADER_TAG = b'SRKIT1H'
TRAILER_TAG = b'SRKIT1T'
VERSION = 1
CHUNK = 64 * 1024
_ZERO = bytes(CHUNK)
_MOD = 1 << 256


def payload(tag, record):
    """The content of the skippable frame (compress.skippable) holding ``record``."""
    return tag + json.dumps(record, sort_keys=True).encode('utf-8')


def parse_frame_payload(payload):
    """(tag, record) of one srkit skippable frame's payload, or (None, None)."""
    tag = payload[:len(HEADER_TAG)]
    if tag not in (HEADER_TAG, TRAILER_TAG):
        return None, None
    try:
        return tag, json.loads(payload[len(tag):].decode('utf-8'))
    except ValueError:
        raise SRError('VDIUnavailable', 'the srkit metadata of the stream is corrupt')


def find_trailer(tail):
    """The trailer record in the last bytes of a stream, or None."""
    at = tail.rfind(TRAILER_TAG)
    while at >= 8:
        magic, length = struct.unpack('<II', tail[at - 8:at])
        if magic == SKIPPABLE_MAGIC and at + length == len(tail):
            return parse_frame_payload(tail[at:])[1]
        at = tail.rfind(TRAILER_TAG, 0, at)
    return None


def header(fmt, virtual_size, source, base='', compression='none', extra=None):
    record = {'srkit_export': VERSION, 'format': fmt, 'virtual_size': int(virtual_size),
              'source': source, 'base': base or '', 'compression': compression}
    record.update(extra or {})
    return record


class Digest(object):
    """The order-independent digest of logical content (see the module docstring)."""

    def __init__(self):
        self.total = 0
        self.chunks = 0
        self.partial = {}   # chunk index -> bytearray, for writes that do not cover a chunk

    def update(self, offset, data):
        """Add ``data`` found at disk ``offset``; whole chunks are hashed at once."""
        mv = memoryview(data)
        end = offset + len(mv)
        pos = offset
        while pos < end:
            index, skew = divmod(pos, CHUNK)
            take = min(CHUNK - skew, end - pos)
            piece = mv[pos - offset:pos - offset + take]
            if skew == 0 and take == CHUNK and index not in self.partial:
                self._add(index, piece)
            else:
                buf = self.partial.setdefault(index, bytearray(CHUNK))
                buf[skew:skew + take] = piece
            pos += take

    def _add(self, index, chunk):
        # startswith compares with memcmp; == between a memoryview and bytes goes
        # element by element (40 MB/s: it was most of an import's CPU time)
        if not _ZERO.startswith(chunk):
            h = hashlib.sha256(struct.pack('>Q', index * CHUNK))
            h.update(chunk)
            self.total = (self.total + int.from_bytes(h.digest(), 'big')) % _MOD
            self.chunks += 1

    def hexdigest(self, virtual_size=None):
        for index in sorted(self.partial):
            chunk = self.partial.pop(index)
            if virtual_size is not None:
                chunk = chunk[:max(0, min(CHUNK, virtual_size - index * CHUNK))]
            self._add(index, chunk)
        return '%064x' % self.total
