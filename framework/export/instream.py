"""The reading end: detect compression, decompress, collect srkit's metadata frames.

``open_input(fd)`` returns a ``Source``: ``read(n)`` gives decompressed image
bytes (fewer only at the end), ``header``/``trailer`` the srkit records found
(None for a bare file from another tool), ``finish()`` raises on a zstd error.

The header frame comes first and is parsed here; the data frames go to
python-zstandard's stream reader (or ``zstd -d``), which skips skippable frames
and bounds its output however well the input compresses (a raw export of an
empty disk is all zeros); the trailer is found in the last bytes of the input.
A truncated srkit stream has no trailer, and is refused for that.
"""

import os
import struct
import subprocess
import threading

from framework.errors import SRError
from framework.export import compress, container

READ_SIZE = 4 * 1024 * 1024
PIECE = 1024 * 1024          # decompressed bytes per step: big enough, still cheap to allocate
TAIL = 64 * 1024


def _read_exact(fd, n):
    parts, got = [], 0
    while got < n:
        b = os.read(fd, n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b''.join(parts)


class _RawInput(object):
    """The compressed input as a file object; remembers its last bytes (the trailer)."""

    def __init__(self, fd, first):
        self.fd = fd
        self.first = first
        self.tail = b''
        self.count = 0

    def read(self, size=READ_SIZE):
        if self.first:
            data, self.first = self.first, b''
        else:
            data = os.read(self.fd, max(size, 1))
        self.count += len(data)
        self.tail = (self.tail + data)[-TAIL:] if len(data) < TAIL else data[-TAIL:]
        return data


class Source(object):
    def __init__(self):
        self.pending = b''         # bytes pushed back (format detection peeks)
        self.pos = 0               # offset in the decompressed image of the next byte
        self.eof = False
        self.header = None
        self.trailer = None
        self.compression = 'none'
        self.queue = None

    def _next(self, n):
        """Up to ``n`` decompressed bytes; b'' at the end."""
        raise NotImplementedError

    def _pump(self):
        # decompression (or the pipe) runs here while the caller writes the last piece
        try:
            while True:
                data = self._next(PIECE)
                self.queue.put(data)
                if not data:
                    return
        except BaseException as e:
            self.queue.put(e)

    def _get(self):
        if self.queue is None:
            import queue
            self.queue = queue.Queue(8)
            thread = threading.Thread(target=self._pump, name='srkit-import-read')
            thread.daemon = True
            thread.start()
        item = self.queue.get()
        if isinstance(item, BaseException):
            self.eof = True
            raise item
        return item

    def read(self, n):
        parts, got = [], 0
        if self.pending:
            parts.append(self.pending[:n])
            got = len(parts[0])
            self.pending = self.pending[n:]
        while got < n and not self.eof:
            data = self._get()
            if not data:
                self.eof = True
                break
            if len(data) > n - got:
                self.pending = data[n - got:]
                data = data[:n - got]
            parts.append(data)
            got += len(data)
        out = parts[0] if len(parts) == 1 else b''.join(parts)
        self.pos += len(out)
        return out

    def unread(self, data):
        self.pending = data + self.pending
        self.pos -= len(data)

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
        """Drain the input (checksums of the last frame) and collect the trailer."""
        while self.read(READ_SIZE):
            pass

    def _header_frame(self, raw):
        """Parse a leading srkit skippable frame of ``raw`` (a _RawInput)."""
        first = raw.first
        if not container.is_skippable(first):
            return
        length = struct.unpack('<I', first[4:8])[0]
        if length > 1024 * 1024:
            raise compress.corrupt('a metadata frame of %d bytes' % length)
        payload = first[8:] + _read_exact(raw.fd, 8 + length - len(first))
        if len(payload) != length:
            raise compress.corrupt('it ends inside its header')
        raw.count += 8 + length - len(first)
        raw.first = b''
        tag, record = container.parse_frame_payload(payload)
        if tag == container.HEADER_TAG:
            self.header = record


class _Plain(Source):
    def __init__(self, fd, first):
        Source.__init__(self)
        self.raw = _RawInput(fd, first)

    def _next(self, n):
        return self.raw.read(n)


class _ModuleZstd(Source):
    def __init__(self, fd, first):
        Source.__init__(self)
        self.compression = 'zstd'
        self.zstandard = compress._module()
        self.raw = _RawInput(fd, first)
        self._header_frame(self.raw)
        self.reader = self.zstandard.ZstdDecompressor().stream_reader(
            self.raw, read_size=READ_SIZE, read_across_frames=True)

    def _next(self, n):
        try:
            data = self.reader.read(n)
        except self.zstandard.ZstdError as e:
            raise compress.corrupt(str(e))
        if not data:
            self.trailer = container.find_trailer(self.raw.tail)
        return data


class _CliZstd(Source):
    """``zstd -d`` in a child process; a thread feeds it the input."""

    def __init__(self, fd, first):
        Source.__init__(self)
        self.compression = 'zstd'
        self.raw = _RawInput(fd, first)
        self._header_frame(self.raw)
        try:
            self.proc = subprocess.Popen(['zstd', '-d', '-c', '-q'], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        except OSError as e:
            raise SRError('SMGeneral', 'neither python3-zstandard nor the zstd command '
                          'is available: %s' % e)
        self.out = self.proc.stdout.fileno()
        compress.big_pipe(self.out)
        compress.big_pipe(self.proc.stdin.fileno())
        self.thread = threading.Thread(target=self._feed, name='zstd-feed')
        self.thread.daemon = True
        self.thread.start()

    def _feed(self):
        try:
            while True:
                data = self.raw.read(READ_SIZE)
                if not data:
                    break
                self.proc.stdin.write(data)
        except Exception:  # zstd died (corrupt input): its exit status says so
            pass
        finally:
            try:
                self.proc.stdin.close()
            except Exception:
                pass

    def _next(self, n):
        data = os.read(self.out, min(n, READ_SIZE))
        if data:
            return data
        self.thread.join()
        status = self.proc.wait()
        if status != 0:
            raise compress.corrupt('zstd -d exited with status %d' % status)
        self.trailer = container.find_trailer(self.raw.tail)
        return b''


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
