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

In a srkit stream (one with srkit's header) a run of zeros the writer announced
(compress.zero_marker) is not decompressed: ``_Frames`` takes the announced zero
frames out of what the decompressor sees, provided they are byte for byte the
ones compress writes (so their content is known to be zeros without reading
them), and ``pieces()`` yields the run as a ``ZeroRun`` at its place instead of
its bytes. Anything else (another tool's stream, a damaged frame) goes to the
decompressor unchanged, which checks it as before.
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


class ZeroRun(object):
    """``length`` zero bytes of the image, not materialised (``pieces()`` yields it)."""

    def __init__(self, length):
        self.length = length

    def __len__(self):
        return self.length


_MAGIC = struct.unpack('<I', compress.ZSTD_MAGIC)[0]


class _Frames(object):
    """The compressed input (a _RawInput) as the decompressor must see it: ``read()``
    gives it unchanged except for announced zero runs, which become ``holes``
    entries [offset in the decompressed output, length] instead of bytes.

    It walks frame and block headers (3 bytes per block of at most 128 KiB) and
    never looks inside a block. A marker must be followed by exactly the zero
    frames it announces; anything else is corruption (``error``, raised by read)."""

    def __init__(self, raw):
        self.raw = raw
        self.buf, self.at = b'', 0
        self.eof = False
        self.passthrough = 0      # bytes to give unchanged before the next header
        self.in_frame = False     # walking a zstd frame's blocks
        self.checksum = False     # the current frame ends with a 4-byte checksum
        self.rest = False         # not understood: everything else goes unchanged
        self.zeros = {}           # frame bytes -> size, of compress's zero frames
        self.expect = 0           # announced zero bytes not met yet
        self.skipped = 0          # zero bytes taken out so far
        self.holes = []           # [offset in the decompressed output, length]

    def _have(self, n):
        """At least ``n`` unread bytes buffered (fewer only at the end)."""
        while len(self.buf) - self.at < n and not self.eof:
            more = self.raw.read(READ_SIZE)
            if not more:
                self.eof = True
                break
            self.buf = self.buf[self.at:] + more
            self.at = 0
        return len(self.buf) - self.at >= n

    def _take(self, n):
        if self.at >= len(self.buf) and not self._have(1):
            return b''
        out = self.buf[self.at:self.at + n]
        self.at += len(out)
        return out

    def read(self, size=READ_SIZE):
        """Bytes for the decompressor (about ``size``); b'' at the end."""
        parts, got = [], 0
        while got < size:
            if self.passthrough or self.rest:
                out = self._take(size - got if self.rest else min(self.passthrough, size - got))
                if not out:
                    break
                self.passthrough = max(0, self.passthrough - len(out))
                parts.append(out)
                got += len(out)
                continue
            if self.in_frame:
                if not self._have(3):
                    self.rest = True
                    continue
                block = struct.unpack('<I', self.buf[self.at:self.at + 3] + b'\0')[0]
                kind, length = (block >> 1) & 3, block >> 3
                if kind == 3:              # reserved: the decompressor says it is corrupt
                    self.rest = True
                    continue
                self.passthrough = 3 + (1 if kind == 1 else length)
                if block & 1:              # the last block
                    self.in_frame = False
                    self.passthrough += 4 if self.checksum else 0
                continue
            if not self._have(8):
                if self.expect:
                    raise compress.corrupt('it ends inside a run of zeros')
                self.rest = True
                continue
            magic, length = struct.unpack('<II', self.buf[self.at:self.at + 8])
            if (magic & 0xFFFFFFF0) == 0x184D2A50:
                if length <= 64 and self._have(8 + length):
                    marker = compress.parse_zero_marker(self.buf[self.at + 8:
                                                                 self.at + 8 + length])
                    if marker is not None:
                        self._announce(*marker)
                        self.at += 8 + length
                        continue
                self.passthrough = 8 + length
                continue
            if magic != _MAGIC:
                self.rest = True
                continue
            if self.expect and self._zero_frame():
                continue
            if self.expect:
                raise compress.corrupt('a run of zeros is not the frames it announced')
            self._frame_header()
        return parts[0] if len(parts) == 1 else b''.join(parts)

    def _announce(self, offset, length):
        if self.expect:
            raise compress.corrupt('a run of zeros is announced inside another')
        if not self.zeros:
            self.zeros = compress.known_zero_frames()
        # the decompressor sees neither this run nor the earlier ones
        self.holes.append([offset - self.skipped, length])
        self.expect = length

    def _zero_frame(self):
        for frame, size in self.zeros.items():
            if size <= self.expect and self._have(len(frame)) and \
                    self.buf.startswith(frame, self.at):
                self.at += len(frame)
                self.expect -= size
                self.skipped += size
                return True
        return False

    def _frame_header(self):
        if not self._have(6):
            self.rest = True
            return
        fhd = self.buf[self.at + 4]
        single = (fhd >> 5) & 1
        size = 4 + 1 + (0 if single else 1) + (0, 1, 2, 4)[fhd & 3] + \
            (single, 2, 4, 8)[fhd >> 6]
        self.checksum = bool((fhd >> 2) & 1)
        self.passthrough = size
        self.in_frame = True


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
        # zero runs taken out of the decompressor's output (_Frames.holes), and where
        # the view starts in that output
        self.holes, self.hole = [], 0
        self.view_at = 0
        self.from_view = False     # the last read() came from the view alone

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
        self.view_at += len(self.view)
        self.view, self.at = memoryview(b''), 0
        if self.lent is not None:
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

    def _next_hole(self):
        """[offset in the decompressed output, length] of the next zero run, or None."""
        if self.hole >= len(self.holes):
            return None
        hole = self.holes[self.hole]
        if hole[0] < self.view_at + self.at:
            raise compress.corrupt('a run of zeros is announced where data was')
        return hole

    def _at_hole(self):
        hole = self._next_hole()
        return hole if hole is not None and hole[0] == self.view_at + self.at else None

    def _view_part(self, most):
        """The next at most ``most`` bytes of the view, up to the next zero run."""
        hole = self._next_hole()
        if hole is not None:
            most = min(most, hole[0] - self.view_at - self.at)
        part = self.view[self.at:self.at + most]
        self.at += len(part)
        return part

    def _ended(self):
        if self._next_hole() is not None:
            raise compress.corrupt('a run of zeros is announced beyond the end')
        return True

    def pieces(self):
        """(offset, view) of the rest of the image, each view valid until the next;
        a run of zeros taken out of the stream comes as (offset, ZeroRun)."""
        if self.pending:
            data, self.pending = self.pending, b''
            self.pos += len(data)
            yield self.pos - len(data), data
        while True:
            hole = self._at_hole()
            if hole is not None:
                length = hole[1]
                self.hole += 1
                self.pos += length
                yield self.pos - length, ZeroRun(length)
                continue
            if self.at >= len(self.view):
                if not self._next_piece() and self._at_hole() is None and self._ended():
                    return
                continue    # a run may come first: whatever the new piece holds came later
            view = self._view_part(len(self.view))
            self.pos += len(view)
            yield self.pos - len(view), view

    def read(self, n):
        parts, got = [], 0
        self.from_view = not self.pending
        if self.pending:
            parts.append(self.pending[:n])
            got = len(parts[0])
            self.pending = self.pending[n:]
        while got < n:
            hole = self._at_hole()
            if hole is not None:      # a reader that wants bytes gets the zeros
                take = min(n - got, hole[1])
                parts.append(bytes(take))
                hole[1] -= take
                if not hole[1]:
                    self.hole += 1
                got += take
                self.from_view = False
                continue
            if self.at >= len(self.view):
                if not self._next_piece() and self._at_hole() is None and self._ended():
                    break
                continue
            part = self._view_part(n - got)
            parts.append(part.tobytes())
            got += len(part)
        out = parts[0] if len(parts) == 1 else b''.join(parts)
        self.pos += len(out)
        return out

    def unread(self, data):
        """Push back the bytes the last read() returned."""
        if self.from_view and self.at >= len(data):    # the last ones read from this piece
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
        source = self.raw
        if self.header is not None:
            source = _Frames(self.raw)
            self.holes = source.holes
        self.reader = self.zstandard.ZstdDecompressor().stream_reader(
            source, read_size=READ_SIZE, read_across_frames=True)

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
    """``zstd -d`` in a child process. A srkit stream is fed to it by a thread,
    through ``_Frames`` (which takes the zero runs out); another tool's file it
    reads itself, any other input is fed as it is. The feeding thread keeps the
    last bytes (the trailer); from a file they are read from its end afterwards."""

    def __init__(self, fd, first):
        Source.__init__(self)
        self.compression = 'zstd'
        self.raw = _RawInput(fd, first)
        self._header_frame(self.raw)
        import stat
        self.file = stat.S_ISREG(os.fstat(fd).st_mode)
        self.frames = None
        self.feed_error = None
        if self.header is not None:
            self.frames = _Frames(self.raw)
            self.holes = self.frames.holes
        direct = self.file and self.frames is None
        if direct and self.raw.first:   # no srkit header: zstd reads from the start
            os.lseek(fd, -len(self.raw.first), os.SEEK_CUR)
            self.raw.first = b''
        try:
            self.proc = subprocess.Popen(['zstd', '-d', '-c', '-q'],
                                         stdin=fd if direct else subprocess.PIPE,
                                         stdout=subprocess.PIPE)
        except OSError as e:
            raise SRError('SMGeneral', 'neither python3-zstandard nor the zstd command '
                          'is available: %s' % e)
        self.out = self.proc.stdout.fileno()
        compress.big_pipe(self.out)
        self.thread = None
        if not direct:
            compress.big_pipe(self.proc.stdin.fileno())
            self.thread = threading.Thread(target=self._feed, name='zstd-feed')
            self.thread.daemon = True
            self.thread.start()

    def _feed(self):
        source = self.frames or self.raw
        try:
            while True:
                data = source.read(READ_SIZE)
                if not data:
                    break
                compress.write_all(self.proc.stdin.fileno(), data)
        except SRError as e:   # _Frames found the zero runs broken
            self.feed_error = e
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
        if self.feed_error is not None:
            raise self.feed_error
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
