"""zstd compression of a byte stream: the ``zstd`` CLI or python-zstandard.

Both write standard zstd frames with content checksums (XXH64), so either end
of a transfer may use either. Which one runs (SRKIT_ZSTD): ``auto`` (default)
takes the ``zstd`` command when it is on PATH and python-zstandard otherwise;
``cli`` / ``module`` force one. The CLI comes first because it measured faster
here: ``zstd -T0`` compresses in its own process with its own I/O thread while
this one reads and hashes the disk, where python-zstandard's multi-threaded
compressor (``threads=-1``) ran 1.6-2x slower on the same bytes and its
decompressor about 2x slower than ``zstd -d`` (bench/export.py, docs/export.md).
"""

import os
import subprocess

from framework.errors import SRError

DEFAULT_LEVEL = 3


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
    if choice == 'auto':
        import shutil
        if shutil.which('zstd'):
            return None
    try:
        import zstandard
        return zstandard
    except ImportError:
        return None


def backend():
    return 'python-zstandard' if _module() is not None else 'zstd-cli'


F_SETPIPE_SZ = 1031


def big_pipe(fd):
    """Grow a pipe from 64 KiB to 1 MiB (the default maximum): a quarter of the
    system calls and wake-ups between this process and zstd."""
    import fcntl
    try:
        fcntl.fcntl(fd, F_SETPIPE_SZ, 1024 * 1024)
    except (IOError, OSError):
        pass


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
        big_pipe(self.proc.stdin.fileno())

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
