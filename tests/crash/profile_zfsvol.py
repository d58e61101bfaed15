"""Crash-matrix profile of the `zfsvol` driver: real OpenZFS, so it runs only inside the
guest of tests/rigs/zfs.sh (tests/zfs/test_zfs_crash.py runs it there)."""
import os
import subprocess
import time

TYPE = 'zfsvol'
EXECUTABLE = 'ZFSVolSR'
POOL = 'srkcrash'
_HEX = frozenset('0123456789abcdef-')


def _zfs(*argv, check=True):
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise RuntimeError('%s: %s' % (' '.join(argv), proc.stderr))
    return proc.stdout


def unavailable():
    try:
        ok = subprocess.run(['zpool', 'list', '-H'], capture_output=True,
                            timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return '' if ok else 'no usable OpenZFS here (runs in the tests/rigs/zfs.sh guest)'


def device_config(workdir):
    if subprocess.run(['zpool', 'list', POOL], capture_output=True).returncode != 0:
        img = '/tmp/%s.img' % POOL   # the guest's /tmp: gone with the guest
        with open(img, 'wb') as f:
            f.truncate(2 << 30)
        _zfs('zpool', 'create', '-f', '-o', 'cachefile=none', POOL, img)
    return {'pool': POOL}


def _is_uuid(text):
    return len(text) == 36 and set(text) <= _HEX


def objects(device_config, sr_uuid):
    """Every zvol and snapshot of the SR as `zfs list` reports it. A zvol or snapshot
    named by a uuid counts as that VDI; hidden ones (retired zvols, base-/retired-
    snapshots) count as the VDIs that still depend on them and are listed under their
    own name only when nothing does (a leak)."""
    root = '%s/%s' % (device_config['pool'], sr_uuid)
    out = _zfs('zfs', 'list', '-t', 'all', '-r', '-Hp', '-o', 'name,type,volsize,clones', root)
    rows = [line.split('\t') for line in out.splitlines()]
    found = {}
    snaps = {}
    for name, kind, volsize, clones in rows:
        if kind == 'snapshot':
            snaps.setdefault(name.split('@')[0], []).append(name)
    for name, kind, volsize, clones in rows:
        if name == root:
            continue
        leaf = name.split('@', 1)[1] if '@' in name else name.rsplit('/', 1)[1]
        size = int(volsize) if volsize.isdigit() else 0
        if _is_uuid(leaf):
            found[leaf] = size
        elif kind == 'snapshot' and clones not in ('', '-'):
            continue                     # the origin of a clone VDI
        elif kind == 'volume' and leaf.startswith('retired-') and snaps.get(name):
            continue                     # holds snapshots: judged by those
        else:
            found[name] = size
    return found


def _path(device_config, sr_uuid, location):
    root = '%s/%s' % (device_config['pool'], sr_uuid)
    if subprocess.run(['zfs', 'list', root + '/' + location], capture_output=True).returncode == 0:
        return '/dev/zvol/%s/%s' % (root, location)
    for name in _zfs('zfs', 'list', '-t', 'snapshot', '-r', '-H', '-o', 'name',
                     root).split():
        if name.endswith('@' + location):
            _zfs('zfs', 'set', 'snapdev=visible', name.split('@')[0])
            return '/dev/zvol/' + name
    raise KeyError(location)


def read(device_config, sr_uuid, location, offset, length):
    path = _path(device_config, sr_uuid, location)
    deadline = time.time() + 30
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.1)
    with open(path, 'rb') as f:
        return os.pread(f.fileno(), length, offset)


def cleanup(device_config, sr_uuid):
    _zfs('zfs', 'destroy', '-r', '%s/%s' % (device_config['pool'], sr_uuid), check=False)
