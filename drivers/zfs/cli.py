"""The ZFS operations the driver uses, as ``zfs``/``zpool`` argv lists and ``-Hp`` parsing.

``Cli`` is the complete backend. ``drivers.zfs.lzc.Lzc`` replaces the hot mutating
calls by libzfs_core (pyzfs) where that module imports; everything else (listings,
properties, rename, pools) stays on the CLI, which XCP-ng hosts always have.
"""

from drivers.zfs import layout as L
from drivers.zfs.process import Runner, ZfsError

ZFS = 'zfs'
ZPOOL = 'zpool'


def _opts(props):
    argv = []
    for key in sorted(props or {}):
        argv += ['-o', '%s=%s' % (key, props[key])]
    return argv


def parse_props(text):
    """``zfs get -Hp -o property,value`` -> {property: value}; '-' means unset."""
    found = {}
    for line in text.splitlines():
        if '\t' in line:
            key, value = line.split('\t', 1)
            found[key] = value
    return found


class Cli(object):
    kind = 'cli'

    def __init__(self, runner=None):
        self.run = runner or Runner()

    # --- listings ----------------------------------------------------------------------
    def list_tree(self, dataset, types='all', depth=None):
        argv = [ZFS, 'list', '-t', types, '-r', '-Hp', '-s', 'createtxg', '-o',
                ','.join(L.LIST_PROPS)]
        if depth is not None:
            argv += ['-d', str(depth)]
        return L.parse_rows(self.run(argv + [dataset]))

    def row(self, name):
        """One dataset or snapshot as a Row, or None when it does not exist."""
        try:
            rows = L.parse_rows(self.run([ZFS, 'list', '-t', 'all', '-Hp', '-o',
                                          ','.join(L.LIST_PROPS), name]))
        except ZfsError as e:
            if e.missing:
                return None
            raise
        return rows[0] if rows else None

    def exists(self, name):
        return self.row(name) is not None

    def get(self, name, props):
        return parse_props(self.run([ZFS, 'get', '-Hp', '-o', 'property,value',
                                     ','.join(props), name]))

    def filesystems(self, root=None):
        """[(name, srkit:sr, used, available)] of filesystems (all pools without root)."""
        argv = [ZFS, 'list', '-t', 'filesystem', '-Hp', '-o',
                'name,%s,used,available' % L.SR_PROP]
        if root:
            argv += ['-r', root]
        found = []
        for line in self.run(argv).splitlines():
            f = line.split('\t')
            if len(f) == 4:
                found.append((f[0], '' if f[1] == '-' else f[1], int(f[2]), int(f[3])))
        return found

    # --- datasets --------------------------------------------------------------------------
    def create_filesystem(self, name, props):
        self.run([ZFS, 'create'] + _opts(props) + [name])

    def create_volume(self, name, size, props, sparse):
        self.run([ZFS, 'create'] + (['-s'] if sparse else []) + ['-V', str(size)]
                 + _opts(props) + [name])

    def snapshot(self, name, props):
        self.run([ZFS, 'snapshot'] + _opts(props) + [name])

    def clone(self, origin, name, props):
        self.run([ZFS, 'clone'] + _opts(props) + [origin, name])

    def destroy(self, name):
        import time
        for attempt in range(10):
            try:
                self.run([ZFS, 'destroy', name])
                return
            except ZfsError as e:
                if e.missing:
                    return
                # udev may still hold a just-created or just-closed zvol for a moment
                if not e.busy or attempt == 9:
                    raise
                time.sleep(0.3)

    def rename(self, old, new):
        self.run([ZFS, 'rename', old, new])

    def set(self, name, props):
        self.run([ZFS, 'set'] + ['%s=%s' % (k, props[k]) for k in sorted(props)] + [name])

    def rollback(self, snapshot):
        self.run([ZFS, 'rollback', snapshot])

    def send_argv(self, snapshot, base=None):
        return [ZFS, 'send'] + (['-i', base] if base else []) + [snapshot]

    def send(self, snapshot, base=None):
        """A running ``zfs send``: (readable byte stream, finish()) where finish raises on error."""
        proc = self.run.stream(self.send_argv(snapshot, base))

        def finish():
            err = proc.stderr.read().decode('utf-8', 'replace')
            proc.stdout.close()
            proc.stderr.close()
            rc = proc.wait()
            if rc != 0:
                raise ZfsError(self.send_argv(snapshot, base), rc, err)
        return proc.stdout, finish

    # --- pools ---------------------------------------------------------------------------------
    def pools(self):
        """[(name, size, allocated, free)]."""
        found = []
        for line in self.run([ZPOOL, 'list', '-Hp', '-o', 'name,size,allocated,free']).splitlines():
            f = line.split('\t')
            if len(f) == 4:
                found.append((f[0], int(f[1]), int(f[2]), int(f[3])))
        return found

    def pool_feature(self, pool, feature):
        """'enabled', 'active', 'disabled' or '' for an unknown feature."""
        try:
            out = self.run([ZPOOL, 'get', '-Hp', '-o', 'value', 'feature@' + feature, pool])
        except ZfsError:
            return ''
        value = out.strip()
        return '' if value == '-' else value

    def create_pool(self, pool, devices, ashift=None, force=False, fs_props=None):
        argv = [ZPOOL, 'create'] + (['-f'] if force else [])
        if ashift:
            argv += ['-o', 'ashift=%d' % ashift]
        for key in sorted(fs_props or {}):
            argv += ['-O', '%s=%s' % (key, fs_props[key])]
        self.run(argv + [pool] + list(devices), timeout=600)

    def destroy_pool(self, pool):
        self.run([ZPOOL, 'destroy', pool], timeout=600)
