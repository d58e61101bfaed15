"""The ``zfs`` and ``zpool`` processes: run with argv lists, never a shell, always
bounded; ``ZfsError`` says how one failed (missing, busy, exists, out of space)."""

from framework.errors import SRError

DEFAULT_TIMEOUT = 300   # zfs commands are fast, but a pool under heavy I/O can stall


class ZfsError(Exception):
    """A zfs/zpool command failed; ``missing``/``busy``/``exists``/``nospace`` classify it."""

    def __init__(self, argv, returncode, stderr):
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = (stderr or '').strip()
        Exception.__init__(self, '%s: %s (exit %s)' % (' '.join(self.argv[:3]),
                                                       self.stderr, returncode))

    def _has(self, *words):
        low = self.stderr.lower()
        return any(w in low for w in words)

    @property
    def missing(self):
        return self._has('does not exist', 'no such pool', 'no such dataset',
                         'could not find any snapshots')

    @property
    def busy(self):
        return self._has('busy', 'in use')

    @property
    def exists(self):
        return self._has('already exists')

    @property
    def nospace(self):
        return self._has('out of space', 'no space', 'size is greater than available space')

    def fault(self, default='SMGeneral', doing=''):
        name = default
        if self.nospace:
            name = 'SRNoSpace'
        elif self.busy:
            name = 'VDIInUse'
        detail = '%s: %s' % (doing, self) if doing else str(self)
        return SRError(name, detail)


class Runner(object):
    """Runs one command and returns its stdout; the unit tests swap in a fake."""

    def __init__(self, timeout=DEFAULT_TIMEOUT):
        self.timeout = timeout

    def __call__(self, argv, timeout=None):
        import subprocess
        try:
            proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, universal_newlines=True)
        except OSError as e:
            raise SRError('SRUnavailable', 'cannot run %s (%s): install zfsutils-linux'
                          % (argv[0], e))
        try:
            out, err = proc.communicate(timeout=timeout or self.timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise SRError('SRUnavailable', '%s did not answer within %d s'
                          % (' '.join(argv[:3]), timeout or self.timeout))
        if proc.returncode != 0:
            raise ZfsError(argv, proc.returncode, err)
        return out

    def stream(self, argv):
        """Start a command whose stdout is read as a byte stream (zfs send)."""
        import subprocess
        return subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
