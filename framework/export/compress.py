"""zstd compression of a byte stream: python-zstandard, else the ``zstd`` CLI.

Both paths write standard zstd frames with content checksums (XXH64), so either
end of a transfer may use either path. python-zstandard compresses with one
worker per core (``threads=-1``); the CLI gets ``-T0``. SRKIT_ZSTD=cli forces
the CLI path (tests exercise it; a dom0 without python3-zstandard takes it).
"""

import os
import subprocess

from framework.errors import SRError

DEFAULT_LEVEL = 3
WRITE_SIZE = 4 * 1024 * 1024


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
    if os.environ.get('SRKIT_ZSTD') == 'cli':
        return None
    try:
        import zstandard
        return zstandard
    except ImportError:
        return None


def backend():
    return 'python-zstandard' if _module() is not None else 'zstd-cli'


def _write_all(fd, data):
    mv = memoryview(data)
    while mv:
        mv = mv[os.write(fd, mv):]


class Plain(object):
    """No compression: bytes go straight to the file descriptor."""

    def __init__(self, fd):
        self.fd = fd

    def write(self, data):
        _write_all(self.fd, data)

    def close(self):
        pass


class _ModuleCompressor(object):
    def __init__(self, zstandard, fd, level):
        self.fd = fd
        self.cobj = zstandard.ZstdCompressor(level=level, threads=-1, write_checksum=True) \
            .compressobj()

    def write(self, data):
        out = self.cobj.compress(data)
        if out:
            _write_all(self.fd, out)

    def close(self):
        _write_all(self.fd, self.cobj.flush())


class _CliCompressor(object):
    def __init__(self, fd, level):
        try:
            self.proc = subprocess.Popen(['zstd', '-q', '-c', '-T0', '--check', '-%d' % level]
                                         if level > 0 else
                                         ['zstd', '-q', '-c', '-T0', '--check',
                                          '--fast=%d' % -level],
                                         stdin=subprocess.PIPE, stdout=fd)
        except OSError as e:
            raise SRError('SMGeneral', 'neither python3-zstandard nor the zstd command '
                          'is available: %s' % e)

    def write(self, data):
        try:
            self.proc.stdin.write(data)
        except BrokenPipeError:
            self.proc.wait()
            raise SRError('SMGeneral', 'zstd exited with status %d' % self.proc.returncode)

    def close(self):
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            raise SRError('SMGeneral', 'zstd exited with status %d' % self.proc.returncode)


def compressor(fd, kind, level=DEFAULT_LEVEL):
    """An object with write(bytes) and close() that writes one zstd frame to ``fd``."""
    if kind == 'none':
        return Plain(fd)
    zstandard = _module()
    if zstandard is not None:
        return _ModuleCompressor(zstandard, fd, level)
    return _CliCompressor(fd, level)


def corrupt(why):
    return SRError('VDIUnavailable', 'the stream is corrupt or truncated: %s' % why)


class ModuleDecompressor(object):
    """Frame by frame, so that skippable frames between and after data frames are seen."""

    def __init__(self):
        self.zstandard = _module()
        self.dobj = None
        self.pending = b''

    def feed(self, data, on_skippable):
        """Decompress ``data``; skippable frames go to ``on_skippable(payload)``; return bytes."""
        from framework.export.container import is_skippable
        import struct
        out = []
        buf = self.pending + data
        self.pending = b''
        while buf:
            if self.dobj is None:
                if len(buf) < 8:
                    self.pending = buf
                    break
                if is_skippable(buf):
                    length = struct.unpack('<I', buf[4:8])[0]
                    if len(buf) < 8 + length:
                        self.pending = buf
                        break
                    on_skippable(buf[8:8 + length])
                    buf = buf[8 + length:]
                    continue
                if buf[:4] != b'\x28\xb5\x2f\xfd':
                    raise corrupt('no zstd frame where one should start')
                self.dobj = self.zstandard.ZstdDecompressor().decompressobj(
                    write_size=WRITE_SIZE)
            try:
                chunk = self.dobj.decompress(buf)
            except self.zstandard.ZstdError as e:
                raise corrupt(str(e))
            if chunk:
                out.append(chunk)
            if self.dobj.eof:
                buf = self.dobj.unused_data
                self.dobj = None
            else:
                buf = b''
        return b''.join(out)

    def finish(self):
        if self.dobj is not None or self.pending:
            raise corrupt('it ends inside a frame')
