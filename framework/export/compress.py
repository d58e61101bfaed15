"""The writing end's framing: zstd frames (the ``zstd`` CLI or python-zstandard),
zstd skippable frames for metadata, and runs of zeros.

Both engines write standard zstd frames with content checksums (XXH64), so
either end of a transfer may use either. Which one runs (SRKIT_ZSTD): ``auto``
(default) takes the ``zstd`` command when it is on PATH and python-zstandard
otherwise; ``cli`` / ``module`` force one. The CLI comes first because it
measured faster here: ``zstd -T0`` compresses in its own process with its own
I/O thread while this one reads and hashes the disk, where python-zstandard's
multi-threaded compressor (``threads=-1``) ran 1.6-2x slower on the same bytes
and its decompressor about 2x slower than ``zstd -d`` (docs/export.md).

A long run of zeros (a hole of a raw image) never goes through a compressor:
the current frame is ended and the run is written as ready-made frames of RLE
blocks (``zero_frames``), each with its XXH64 checksum, which any zstd decoder
reads back as zeros. Pushing the zeros through the pipe and the compressor cost
more CPU than the data itself on a mostly empty disk. The run is announced by a
skippable frame (``zero_marker``: where in the image it starts, how long it is),
so that srkit's reading end (instream) can take those frames out of the stream
unread and never decompress the zeros, while any other zstd decoder expands them.
"""

import os
import struct
import subprocess

from framework.errors import SRError

DEFAULT_LEVEL = 3
ZSTD_MAGIC = b'\x28\xb5\x2f\xfd'
SKIPPABLE_MAGIC = 0x184D2A5E      # one of the 16 skippable-frame magics zstd reserves

# Zero frames: frame header descriptor 0x84 (4-byte content size, checksum, no
# dictionary, not single-segment), window descriptor 0x38 (128 KiB), then RLE blocks
# of 128 KiB of 0x00 and the low 32 bits of XXH64 of the content (precomputed: the
# decoder checks them; tests/export/test_compress.py compares them with zstd's).
_RLE_BLOCK = 128 * 1024
_ZERO_XXH64 = {1024 * 1024: 0xe1163ef1, 64 * 1024 * 1024: 0x7c250fa7}
ZERO_UNIT = min(_ZERO_XXH64)
# below this a run of zeros is cheaper to compress than to end the frame for
ZERO_RUN_MIN = 16 * 1024 * 1024
_ZERO = bytes(4 * 1024 * 1024)
# the skippable frame before a run of zero frames: tag, then image offset and length
ZEROS_TAG = b'SRKIT1Z'
_ZEROS_MARKER = struct.Struct('<7sQQ')


def parse(spec):
    """'zstd', 'zstd:LEVEL' or 'none' -> (kind, level)."""
    kind, _, level = (spec or 'zstd').partition(':')
    if kind == 'none' and not level:
        return 'none', 0
    if kind != 'zstd':
        raise SRError('BadRequest', 'compression %r is not zstd[:level] or none' % spec)
    if not level:
        return 'zstd', DEFAULT_LEVEL
    if not level.lstrip('-').isdigit() or not -7 <= int(level) <= 19:
        raise SRError('BadRequest', 'zstd level %r is not a whole number from -7 to 19' % level)
    return 'zstd', int(level)


def _module():
    """python-zstandard, if it is the engine to use; None means the zstd CLI."""
    choice = os.environ.get('SRKIT_ZSTD') or 'auto'
    if choice == 'cli':
        return None
    if choice == 'auto' and _on_path('zstd'):
        return None
    try:
        import zstandard
        return zstandard
    except ImportError:
        return None


def _on_path(name):
    # what shutil.which does, without importing shutil (and fnmatch) for one lookup
    return any(os.access(os.path.join(d, name), os.X_OK)
               for d in (os.environ.get('PATH') or os.defpath).split(os.pathsep) if d)


def backend():
    return 'python-zstandard' if _module() is not None else 'zstd-cli'


def is_skippable(prefix):
    return len(prefix) >= 4 and (struct.unpack('<I', prefix[:4])[0] & 0xFFFFFFF0) == 0x184D2A50


def skippable(payload):
    """A skippable frame around ``payload``: zstd decoders drop it."""
    return struct.pack('<II', SKIPPABLE_MAGIC, len(payload)) + payload


def _zero_frame(size):
    blocks = size // _RLE_BLOCK
    block = struct.pack('<I', (_RLE_BLOCK << 3) | 2)[:3] + b'\0'
    last = struct.pack('<I', (_RLE_BLOCK << 3) | 3)[:3] + b'\0'
    return (struct.pack('<IBBI', 0xFD2FB528, 0x84, 0x38, size) + block * (blocks - 1) + last
            + struct.pack('<I', _ZERO_XXH64[size]))


def zero_frames(length):
    """zstd frames that decompress to ``length`` zeros (a multiple of ZERO_UNIT)."""
    sizes = sorted(_ZERO_XXH64, reverse=True)
    frames = dict((size, _zero_frame(size)) for size in sizes)
    parts = []
    for size in sizes:
        count, length = divmod(length, size)
        parts.append(frames[size] * count)
    if length:
        raise ValueError('%d bytes of zeros left over' % length)
    return b''.join(parts)


def zero_marker(offset, length):
    """The skippable frame announcing ``length`` bytes of zero frames at image ``offset``."""
    return skippable(_ZEROS_MARKER.pack(ZEROS_TAG, offset, length))


def parse_zero_marker(payload):
    """(offset, length) of a zero marker's payload, or None for any other payload."""
    if len(payload) != _ZEROS_MARKER.size or not payload.startswith(ZEROS_TAG):
        return None
    return _ZEROS_MARKER.unpack(payload)[1:]


def known_zero_frames():
    """{frame bytes: decompressed size} of the zero frames ``zero_frames`` writes."""
    return dict((_zero_frame(size), size) for size in _ZERO_XXH64)


F_SETPIPE_SZ = 1031


def big_pipe(fd):
    """Grow a pipe from 64 KiB to 1 MiB (the default maximum): a quarter of the
    system calls and wake-ups between this process and zstd."""
    import fcntl
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, 1024 * 1024)
    except (IOError, OSError):
        pass


def write_all(fd, data):
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv):]


class _Sink(object):
    """write(data), zeros(n), metadata(payload), close(): the image into ``fd``."""

    def __init__(self, fd):
        self.fd = fd

    def zeros(self, n):
        while n > 0:
            step = min(n, len(_ZERO))
            self.write(memoryview(_ZERO)[:step])
            n -= step

    def close(self):
        pass


class Plain(_Sink):
    """No compression: bytes go straight to the file descriptor. Zeros at the end of
    a regular file are skipped over (the file stays sparse there), elsewhere written."""

    def __init__(self, fd):
        _Sink.__init__(self, fd)
        self.hole = 0          # zeros owed, skipped over rather than written
        self.sparse = False
        try:
            import fcntl
            import stat
            st = os.fstat(fd)
            self.sparse = stat.S_ISREG(st.st_mode) and \
                not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND and \
                os.lseek(fd, 0, os.SEEK_CUR) == st.st_size
        except OSError:
            pass

    def write(self, data):
        self._settle()
        write_all(self.fd, data)

    def zeros(self, n):
        if self.sparse:
            self.hole += n
        else:
            _Sink.zeros(self, n)

    def _settle(self):
        if self.hole:
            os.lseek(self.fd, self.hole, os.SEEK_CUR)   # past the end: reads back as zeros
            self.hole = 0

    def close(self):
        if self.hole:
            self._settle()
            os.ftruncate(self.fd, os.lseek(self.fd, 0, os.SEEK_CUR))


class _Framed(_Sink):
    """A zstd frame that is ended for zero runs and metadata, and begun again on data."""

    def __init__(self, fd, level):
        _Sink.__init__(self, fd)
        self.level = level
        self.open = False
        self.pos = 0       # image bytes written so far (where a zero run starts)

    def zeros(self, n):
        whole = n // ZERO_UNIT * ZERO_UNIT if n >= ZERO_RUN_MIN else 0
        if whole:
            self._end()
            write_all(self.fd, zero_marker(self.pos, whole) + zero_frames(whole))
            self.pos += whole
        _Sink.zeros(self, n - whole)

    def metadata(self, payload):
        self._end()
        write_all(self.fd, skippable(payload))

    def write(self, data):
        if not self.open:
            self._begin()
            self.open = True
        self._write(data)
        self.pos += len(data)

    def _end(self):
        if self.open:
            self.open = False
            self._finish()

    def close(self):
        self._end()


class _ModuleCompressor(_Framed):
    def __init__(self, zstandard, fd, level):
        _Framed.__init__(self, fd, level)
        self.zstandard = zstandard

    def _begin(self):
        self.cobj = self.zstandard.ZstdCompressor(level=self.level, threads=-1,
                                                  write_checksum=True).compressobj()

    def _write(self, data):
        out = self.cobj.compress(data)
        if out:
            write_all(self.fd, out)

    def _finish(self):
        write_all(self.fd, self.cobj.flush())


class _CliCompressor(_Framed):
    def _begin(self):
        level = self.level
        try:
            self.proc = subprocess.Popen(['zstd', '-q', '-c', '-T0', '--check', '-%d' % level]
                                         if level > 0 else
                                         ['zstd', '-q', '-c', '-T0', '--check',
                                          '--fast=%d' % -level],
                                         stdin=subprocess.PIPE, stdout=self.fd, bufsize=0)
        except OSError as e:
            raise SRError('SMGeneral', 'neither python3-zstandard nor the zstd command '
                          'is available: %s' % e)
        big_pipe(self.proc.stdin.fileno())

    def _write(self, data):
        try:
            write_all(self.proc.stdin.fileno(), data)
        except BrokenPipeError:
            self.proc.wait()
            raise SRError('SMGeneral', 'zstd exited with status %d' % self.proc.returncode)

    def _finish(self):
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise SRError('SMGeneral', 'zstd exited with status %d' % self.proc.returncode)


def compressor(fd, kind, level=DEFAULT_LEVEL):
    """The sink that writes an image to ``fd``: ``write(data)``, ``zeros(n)``,
    ``close()``; for zstd also ``metadata(payload)`` (a skippable frame, in order)."""
    if kind == 'none':
        return Plain(fd)
    zstandard = _module()
    if zstandard is not None:
        return _ModuleCompressor(zstandard, fd, level)
    return _CliCompressor(fd, level)


def corrupt(why):
    return SRError('VDIUnavailable', 'the stream is corrupt or truncated: %s' % why)
