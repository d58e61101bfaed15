"""Crash-matrix profile of the `rbd` driver: the real Ceph of tests/rigs/ceph.sh.

Ceph's own view, read with librados/librbd as the cluster admin (never through
the driver): the images, snapshots and clone parents of the SR's namespace, the
index object's intents. The driver's naming rule says who owns what: image ``U``
holding its record ``srkit.vdi.U`` is VDI ``U``; snapshot ``S`` of an image holding
``srkit.vdi.S`` is snapshot VDI ``S``; ``<image>@.clone-X`` belongs to clone ``X``
while image ``X`` hangs from it; an image without a record of its own is kept for
its dependants (snapshot VDIs, clones). Anything else is reported as a leak.

``SRKIT_RBD_DATAPATH`` (default fuse) picks the datapath; with a kernel one (nbd,
krbd: the guest's tests/hostpath) vdi_attach and vdi_detach join the matrix, and
``leftovers`` reports what a killed command left on the host: a watcher of an image
of the SR (Ceph's view), a krbd device or an rbd-nbd daemon of the SR's namespace.
"""
import os

TYPE = 'rbd'
EXECUTABLE = 'RBDSR'
EXTRA_ENV = {}
DATAPATH = os.environ.get('SRKIT_RBD_DATAPATH', 'fuse')
DATAPATH_CRASH = DATAPATH in ('nbd', 'krbd')


def unavailable():
    if not os.environ.get('SRKIT_CEPH_CONF'):
        return 'no Ceph cluster (tests/rigs/ceph.sh env vars absent)'
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401
    except ImportError:
        return 'python rados/rbd bindings not importable'
    return ''


def device_config(workdir):
    e = os.environ
    return {'monitors': e['SRKIT_CEPH_MONITORS'], 'user': e['SRKIT_CEPH_USER'],
            'key': e['SRKIT_CEPH_KEY'], 'pool': e.get('SRKIT_CEPH_POOL', 'rbd'),
            'datapath': DATAPATH}


class _Namespace(object):
    def __init__(self, device_config, sr_uuid):
        import rados
        self.cluster = rados.Rados(conffile=os.environ['SRKIT_CEPH_CONF'],
                                   conf={'log_to_stderr': 'false'})
        self.cluster.connect(timeout=10)
        self.io = self.cluster.open_ioctx(device_config.get('pool', 'rbd'))
        self.io.set_namespace(sr_uuid)

    def __enter__(self):
        return self.io

    def __exit__(self, *exc):
        self.io.close()
        self.cluster.shutdown()


def objects(device_config, sr_uuid):
    import rados
    import rbd
    found = {}
    with _Namespace(device_config, sr_uuid) as io:
        names = set(rbd.RBD().list(io))
        parents = {}
        for name in names:
            with rbd.Image(io, name, read_only=True) as img:
                try:
                    spec = img.get_parent_image_spec()
                    parents[name] = (spec['image_name'], spec['snap_name'])
                except rbd.ImageNotFound:
                    pass
        for name in sorted(names):
            with rbd.Image(io, name, read_only=True) as img:
                md = dict(img.metadata_list())
                snaps = [(s['name'], s['size']) for s in img.list_snaps()]
                if 'srkit.vdi.' + name in md:
                    found[name] = img.size()
                dependants = 0
                for snap, size in snaps:
                    users = [c for c, p in parents.items() if p == (name, snap)]
                    if snap.startswith('.clone-'):
                        if snap[len('.clone-'):] in users:
                            dependants += 1
                        else:
                            found['%s@%s' % (name, snap)] = size
                    elif 'srkit.vdi.' + snap in md:
                        found[snap] = size
                        dependants += 1
                    elif users:
                        dependants += 1
                    else:
                        found['%s@%s' % (name, snap)] = size
                if 'srkit.vdi.' + name not in md and not dependants:
                    found['%s (image without a VDI)' % name] = img.size()
        try:
            with rados.ReadOpCtx() as op:
                it, _ = io.get_omap_vals(op, 'pending.', '', 1000)
                io.operate_read_op(op, 'srkit.sr')
                for key, _ in it:
                    if key.startswith('pending.'):
                        found['intent %s' % key] = 0
        except rados.ObjectNotFound:
            pass
    return found


def read(device_config, sr_uuid, location, offset, length):
    import rbd
    with _Namespace(device_config, sr_uuid) as io:
        names = set(rbd.RBD().list(io))
        if location in names:
            with rbd.Image(io, location, read_only=True) as img:
                return img.read(offset, length)
        for name in names:
            with rbd.Image(io, name, read_only=True) as img:
                if location in set(s['name'] for s in img.list_snaps()):
                    img.set_snap(location)
                    return img.read(offset, length)
    raise KeyError(location)


def cleanup(device_config, sr_uuid):
    """What a failed scenario left: the namespace and everything in it."""
    import sys
    import rbd
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), 'ceph'))
    from namespace_cleanup import empty_namespace
    with _Namespace(device_config, sr_uuid) as io:
        try:
            empty_namespace(io, threads=1)
        except rbd.Error:
            pass
        io.set_namespace('')
        try:
            rbd.RBD().namespace_remove(io, sr_uuid)
        except rbd.Error:
            pass


def leftovers(device_config, sr_uuid):
    """What still maps or serves an image of the SR on this host, and who watches one."""
    import rbd
    found = []
    with _Namespace(device_config, sr_uuid) as io:
        for name in sorted(rbd.RBD().list(io)):
            with rbd.Image(io, name, read_only=True) as img:
                found += ['watcher %s of image %s' % (w['addr'], name)
                          for w in img.watchers_list()]
    base = '/sys/bus/rbd/devices'
    for dev in sorted(os.listdir(base)) if os.path.isdir(base) else ():
        with open(os.path.join(base, dev, 'config_info')) as f:
            if '_pool_ns=%s' % sr_uuid in f.read():
                found.append('krbd device /dev/rbd%s' % dev)
    from simulator.testkit import processes
    for pid, argv in processes():
        if argv and argv[0].endswith(b'rbd-nbd') and \
                any(('/%s/' % sr_uuid).encode() in a for a in argv):
            found.append('rbd-nbd daemon %d' % pid)
    return found
