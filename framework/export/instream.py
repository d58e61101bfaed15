"""The reading end: detect compression, decompress, collect srkit's metadata frames.

``open_input(fd)`` returns a ``Source``: ``read(n)`` gives decompressed image
bytes (fewer only at the end), ``pieces()`` lends them without copying,
``header``/``trailer`` the srkit records found
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
# decompressed bytes per step: few enough steps that a busy machine's scheduler is not
# asked to switch threads for every 128 KiB zstd writes; a raw image is read in these
PIECE = 4 * 1024 * 1024
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
    """Decompressed bytes, made by a thread into a few reused page-aligned buffers of
    PIECE bytes while the caller writes the previous ones out. ``pieces()`` lends
    views of them (valid until the next one is asked for); ``read(n)`` copies."""

    def __init__(self):
        self.pending = b''         # bytes pushed back (format detection peeks)
        self.pos = 0               # offset in the decompressed image of the next byte
        self.eof = False
        self.header = None
        self.trailer = None
        self.compression = 'none'
        self.queue = None
        self.view, self.at = memoryview(b''), 0    # the piece being read, how far
        self.lent = None           # its buffer, given back when the next one is taken

    def _fill(self, view):
        """Fill ``view`` with decompressed bytes; fewer only at the end."""
        raise NotImplementedError

    def _pump(self, free):
        try:
            while True:
                buf = free.get()
                got = self._fill(memoryview(buf))
                self.queue.put((buf, got))
                if got < len(buf):
                    return
        except BaseException as e:
            self.queue.put(e)

    def _next_piece(self):
        """Make the next piece current; False at the end."""
        if self.queue is None:
            import queue
            from framework.export.device import buffer
            self.queue, self.free = queue.Queue(), queue.Queue()
            for _ in range(4):
                self.free.put(buffer(PIECE))
            thread = threading.Thread(target=self._pump, args=(self.free,),
                                      name='srkit-import-read')
            thread.daemon = True
            thread.start()
        if self.lent is not None:
            self.view = memoryview(b'')
            self.free.put(self.lent)
            self.lent = None
        if self.eof:
            return False
        item = self.queue.get()
        if isinstance(item, BaseException):
            self.eof = True
            raise item
        buf, got = item
        if got < len(buf):
            self.eof = True
        self.lent, self.view, self.at = buf, memoryview(buf)[:got], 0
        return got > 0

    def pieces(self):
        """(offset, view) of the rest of the image, each view valid until the next."""
        if self.pending:
            data, self.pending = self.pending, b''
            self.pos += len(data)
            yield self.pos - len(data), data
        while True:
            if self.at >= len(self.view) and not self._next_piece():
                return
            view = self.view[self.at:]
            self.at = len(self.view)
            self.pos += len(view)
            yield self.pos - len(view), view

    def read(self, n):
        parts, got = [], 0
        if self.pending:
            parts.append(self.pending[:n])
            got = len(parts[0])
            self.pending = self.pending[n:]
        while got < n:
            if self.at >= len(self.view) and not self._next_piece():
                break
            take = min(n - got, len(self.view) - self.at)
            parts.append(self.view[self.at:self.at + take].tobytes())
            self.at += take
            got += take
        out = parts[0] if len(parts) == 1 else b''.join(parts)
        self.pos += len(out)
        return out

    def unread(self, data):
        """Push back the bytes the last read() returned."""
        if self.at >= len(data):    # they are the last ones read from this piece
            self.at -= len(data)
        else:
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
        for _ in self.pieces():
            pass

    def _header_frame(self, raw):
        """Parse a leading srkit skippable frame of ``raw`` (a _RawInput)."""
        first = raw.first
        if not compress.is_skippable(first):
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


def _fill_from(fd, view):
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if not n:
            break
        got += n
    return got


class _Plain(Source):
    def __init__(self, fd, first):
        Source.__init__(self)
        self.fd = fd
        self.first = first

    def _fill(self, view):
        first, self.first = self.first[:len(view)], self.first[len(view):]
        view[:len(first)] = first
        return len(first) + _fill_from(self.fd, view[len(first):])


class _ModuleZstd(Source):
    def __init__(self, fd, first):
        Source.__init__(self)
        self.compression = 'zstd'
        self.zstandard = compress._module()
        self.raw = _RawInput(fd, first)
        self._header_frame(self.raw)
        self.reader = self.zstandard.ZstdDecompressor().stream_reader(
            self.raw, read_size=READ_SIZE, read_across_frames=True)

    def _fill(self, view):
        got = 0
        try:
            while got < len(view):
                n = self.reader.readinto(view[got:])
                if not n:
                    self.trailer = container.find_trailer(self.raw.tail)
                    break
                got += n
        except self.zstandard.ZstdError as e:
            raise compress.corrupt(str(e))
        return got


class _CliZstd(Source):
    """``zstd -d`` in a child process. It reads a regular file itself (from where the
    header frame ended; the trailer is read from the file's end afterwards); any
    other input is fed to it by a thread that keeps the last bytes."""

    def __init__(self, fd, first):
        Source.__init__(self)
        self.compression = 'zstd'
        self.raw = _RawInput(fd, first)
        self._header_frame(self.raw)
        import stat
        self.file = stat.S_ISREG(os.fstat(fd).st_mode)
        if self.file and self.raw.first:   # no srkit header: zstd reads from the start
            os.lseek(fd, -len(self.raw.first), os.SEEK_CUR)
            self.raw.first = b''
        try:
            self.proc = subprocess.Popen(['zstd', '-d', '-c', '-q'],
                                         stdin=fd if self.file else subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        except OSError as e:
            raise SRError('SMGeneral', 'neither python3-zstandard nor the zstd command '
                          'is available: %s' % e)
        self.out = self.proc.stdout.fileno()
        compress.big_pipe(self.out)
        self.thread = None
        if not self.file:
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
                compress.write_all(self.proc.stdin.fileno(), data)
        except Exception:  # zstd died (corrupt input): its exit status says so
            pass
        finally:
            try:
                self.proc.stdin.close()
            except Exception:
                pass

    def _fill(self, view):
        got = _fill_from(self.out, view)
        if got == len(view):
            return got
        if self.thread is not None:
            self.thread.join()
        status = self.proc.wait()
        if status != 0:
            raise compress.corrupt('zstd -d exited with status %d' % status)
        if self.file:
            end = os.fstat(self.raw.fd).st_size
            self.raw.tail = os.pread(self.raw.fd, min(TAIL, end), max(0, end - TAIL))
        self.trailer = container.find_trailer(self.raw.tail)
        return got


def open_input(fd, sidecar=None):
    first = _read_exact(fd, 8)
    if first[:4] == compress.ZSTD_MAGIC or compress.is_skippable(first):
        src = _ModuleZstd(fd, first) if compress._module() is not None else _CliZstd(fd, first)
    else:
        src = _Plain(fd, first)
        if sidecar and os.path.exists(sidecar):
            import json
            with open(sidecar) as f:
                meta = json.load(f)
            src.header, src.trailer = meta.get('header'), meta.get('trailer')
    return src
