"""The reading end: detect compression, decompress, collect srkit's metadata frames.

``open_input(fd)`` returns a ``Source``: ``read(n)`` gives decompressed image
bytes (fewer only at the end), ``header``/``trailer`` the srkit records found
(None for a bare file from another tool), ``finish()`` raises on a stream that
ends inside a frame or whose zstd checksum fails.
"""

import os
import struct
import subprocess
import threading

from framework.errors import SRError
from framework.export import compress, container

READ_SIZE = 4 * 1024 * 1024


def _read_exact(fd, n):
    parts, got = [], 0
    while got < n:
        b = os.read(fd, n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b''.join(parts)


class Source(object):
    def __init__(self, fd, first):
        self.fd = fd
        self.first = first         # raw bytes already read to detect the format
        self.buf = bytearray()
        self.pos = 0               # offset in the decompressed image of buf[0]
        self.eof = False
        self.header = None
        self.trailer = None
        self.compression = 'none'
        self.raw_bytes = 0         # compressed bytes consumed (progress)

    def _fill(self):
        """Append decompressed bytes to buf; set eof at the end."""
        raise NotImplementedError

    def read(self, n):
        while len(self.buf) < n and not self.eof:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        self.pos += len(out)
        return out

    def read_exact(self, n, what):
        out = self.read(n)
        if len(out) != n:
            raise compress.corrupt('it ends inside %s' % what)
        return out

    def skip_to(self, offset, what='the image'):
        if offset < self.pos:
            raise SRError('VDIUnavailable', 'the image needs to seek backwards (to %d from %d) '
                          'for %s: not a streamable layout; convert it with qemu-img first'
                          % (offset, self.pos, what))
        while self.pos < offset:
            if not self.read(min(READ_SIZE, offset - self.pos)):
                raise compress.corrupt('it ends before %s' % what)

    def finish(self):
        pass

    def _on_skippable(self, payload):
        tag, record = container.parse_frame_payload(payload)
        if tag == container.HEADER_TAG and self.header is None:
            self.header = record
        elif tag == container.TRAILER_TAG:
            self.trailer = record


class _Plain(Source):
    def _fill(self):
        data = self.first or os.read(self.fd, READ_SIZE)
        self.first = b''
        self.raw_bytes += len(data)
        if data:
            self.buf += data
        else:
            self.eof = True


class _ModuleZstd(Source):
    def __init__(self, fd, first):
        Source.__init__(self, fd, first)
        self.compression = 'zstd'
        self.dec = compress.ModuleDecompressor()
        # the header frame comes first: parse it before any image byte is asked for
        while self.header is None and not self.eof and not self.buf:
            self._fill()

    def _fill(self):
        data = self.first or os.read(self.fd, READ_SIZE)
        self.first = b''
        self.raw_bytes += len(data)
        if not data:
            self.dec.finish()
            self.eof = True
            return
        self.buf += self.dec.feed(data, self._on_skippable)


class _CliZstd(Source):
    """``zstd -d`` in a child; a thread feeds it and keeps the tail for the trailer."""
    TAIL = 64 * 1024

    def __init__(self, fd, first):
        Source.__init__(self, fd, first)
        self.compression = 'zstd'
        if container.is_skippable(first):
            length = struct.unpack('<I', first[4:8])[0]
            rest = _read_exact(fd, 8 + length - len(first)) if len(first) < 8 + length else b''
            first = first + rest
            self._on_skippable(first[8:8 + length])
        self.first = first
        try:
            self.proc = subprocess.Popen(['zstd', '-d', '-c', '-q'], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        except OSError as e:
            raise SRError('SMGeneral', 'neither python3-zstandard nor the zstd command '
                          'is available: %s' % e)
        self.tail = b''
        self.feed_error = None
        self.thread = threading.Thread(target=self._feed, name='zstd-feed')
        self.thread.daemon = True
        self.thread.start()

    def _feed(self):
        try:
            data = self.first
            while data:
                self.raw_bytes += len(data)
                self.tail = (self.tail + data)[-self.TAIL:]
                self.proc.stdin.write(data)
                data = os.read(self.fd, READ_SIZE)
        except Exception as e:  # zstd died (corrupt input): reported by its status
            self.feed_error = e
        finally:
            try:
                self.proc.stdin.close()
            except Exception:
                pass

    def _fill(self):
        data = self.proc.stdout.read1(READ_SIZE) if hasattr(self.proc.stdout, 'read1') \
            else self.proc.stdout.read(READ_SIZE)
        if data:
            self.buf += data
            return
        self.eof = True
        self.thread.join()
        status = self.proc.wait()
        if status != 0:
            raise compress.corrupt('zstd -d exited with status %d' % status)
        self.trailer = container.find_trailer(self.tail)

    def finish(self):
        while not self.eof:
            self._fill()
            self.buf = bytearray()


def open_input(fd, sidecar=None):
    first = _read_exact(fd, 8)
    if first[:4] == container.ZSTD_MAGIC or container.is_skippable(first):
        src = _ModuleZstd(fd, first) if compress._module() is not None else _CliZstd(fd, first)
    else:
        src = _Plain(fd, first)
        if sidecar and os.path.exists(sidecar):
            import json
            with open(sidecar) as f:
                meta = json.load(f)
            src.header, src.trailer = meta.get('header'), meta.get('trailer')
    return src
