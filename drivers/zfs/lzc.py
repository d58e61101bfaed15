"""libzfs_core through pyzfs (Debian: python3-pyzfs): the mutating hot path in-process.

Creating a snapshot or clone this way saves a process spawn per call. Only what
libzfs_core does atomically is moved here; listings, properties, renames and
pools stay on the CLI (pyzfs has no listing API on OpenZFS 2.1).
"""

from drivers.zfs.cli import Cli
from drivers.zfs.process import ZfsError
from framework.errors import SRError


def installed():
    """Whether pyzfs is installed here, without importing it: its import parses
    libzfs_core's C declarations through cffi (0.1 s on a host, 1.5 s and more under
    emulation), which only the calls below need, not a listing or an attach."""
    import importlib.util
    return importlib.util.find_spec('libzfs_core') is not None


def _b(text):
    return text.encode('utf-8')


def _props(props):
    return dict((_b(k), _b(str(v))) for k, v in (props or {}).items())


class Lzc(Cli):
    kind = 'pyzfs'

    def __init__(self, module=None, runner=None):
        Cli.__init__(self, runner)
        self._module = module

    @property
    def lzc(self):
        if self._module is None:
            try:
                import libzfs_core
            except ImportError as e:
                raise SRError('SRUnavailable', 'libzfs_core is installed but does not import '
                              '(%s): repair python3-pyzfs, or use api=cli' % e)
            self._module = libzfs_core
        return self._module

    def _call(self, what, fn, *args):
        """Run a libzfs_core call; turn its exceptions into ZfsError like the CLI's."""
        try:
            return fn(*args)
        except Exception as e:
            if type(e).__module__.split('.')[0] != 'libzfs_core':
                raise
            errors = getattr(e, 'errors', None) or [e]
            text = '; '.join('%s' % (getattr(x, 'message', None) or x) for x in errors)
            kind = ' '.join(type(x).__name__ for x in errors)
            if 'NotFound' in kind:
                text += ' (does not exist)'
            elif 'Exists' in kind:
                text += ' (already exists)'
            elif 'Busy' in kind:
                text += ' (busy)'
            elif 'NoSpace' in kind:
                text += ' (out of space)'
            raise ZfsError(['lzc_' + what] + [str(a) for a in args[:1]], getattr(e, 'errno', 1),
                           '%s: %s' % (type(e).__name__, text))

    def create_volume(self, name, size, props, sparse):
        if not sparse:
            # a thick zvol's refreservation is computed by the zfs command, not by lzc
            return Cli.create_volume(self, name, size, props, sparse)
        raw = _props(dict((k, v) for k, v in props.items() if k != 'volblocksize'))
        raw[b'volsize'] = int(size)
        if 'volblocksize' in props:
            raw[b'volblocksize'] = int(props['volblocksize'])
        self._call('create', self.lzc.lzc_create, _b(name), 'zvol', raw)

    def snapshot(self, name, props):
        self._call('snapshot', self.lzc.lzc_snapshot, [_b(name)], _props(props))

    def clone(self, origin, name, props):
        if any(not k.startswith('srkit:') for k in props):
            return Cli.clone(self, origin, name, props)   # e.g. refreservation=auto
        self._call('clone', self.lzc.lzc_clone, _b(name), _b(origin), _props(props))

    def destroy(self, name):
        if '@' not in name:
            return Cli.destroy(self, name)
        try:
            self._call('destroy_snaps', self.lzc.lzc_destroy_snaps, [_b(name)], False)
        except ZfsError as e:
            if not e.missing:
                raise

    def rollback(self, snapshot):
        dataset = snapshot.split('@', 1)[0]
        self._call('rollback_to', self.lzc.lzc_rollback_to, _b(dataset), _b(snapshot))
