"""SR type -> driver class, imported only when that type is used (fsspec-style), and
what each driver needs on a host.

A missing backend library gives an admin a one-line fix instead of a traceback,
whether it fails loading the driver or in the middle of a command
(``framework.entry`` routes every ImportError here).
"""

from framework.errors import SRError

DRIVERS = {
    'local': 'drivers.local.driver:LocalDriver',
    'rbd': 'drivers.ceph.driver:RBDDriver',
    'gluster': 'drivers.gluster.driver:GlusterDriver',
    's3': 'drivers.s3.driver:S3Driver',
    'zfsvol': 'drivers.zfs.driver:ZFSVolDriver',
}

REQUIRED, OPTIONAL = 'required', 'optional'

# What each driver needs on an XCP-ng 8.3 host, one line per package, as EL7 names it. The one
# place this is written down: its REQUIRED lines become the driver RPM's Requires
# (packaging/spec.py; EL7's rpm has no weak dependencies), docs/install.md lists every line
# (tests/test_docs.py holds it to that), install_hint() words them for a fault, and
# package_for() names the package behind a missing module or command (``uses``, spelled as the
# code spells it). A new need is one more line; a new driver is its DRIVERS entry, its lines
# here and its line in packaging/drivers.tsv.
NEEDS = (
    # type     package                 need      uses               for
    ('local',   'util-linux',           REQUIRED, 'losetup',         'attach (losetup)'),
    ('rbd',     'python36-rados',       REQUIRED, 'rados',           'every command'),
    ('rbd',     'python36-rbd',         REQUIRED, 'rbd',             'every command'),
    ('rbd',     'rbd-nbd',              REQUIRED, 'rbd-nbd',         'datapath=nbd (auto on dom0)'),
    ('rbd',     'rbd-fuse',             OPTIONAL, 'rbd-fuse',        'datapath=fuse'),
    ('gluster', 'glusterfs-fuse',       REQUIRED, 'mount.glusterfs', 'every command'),
    ('gluster', 'glusterfs-api',        OPTIONAL, 'libgfapi',        'server_copy=reflink'),
    ('s3',      'python36-zstandard',   REQUIRED, 'zstandard',       'compression (the default)'),
    ('s3',      'nbd',                  REQUIRED, 'nbd-client',      'attach (the kernel NBD client)'),
    ('s3',      'nbdfuse',              OPTIONAL, 'nbdfuse',         'attach where the nbd module is missing'),
    ('s3',      'fuse3',                OPTIONAL, 'fusermount3',     'attach where the nbd module is missing'),
    ('zfsvol',  'zfs',                  REQUIRED, 'zfs',             'every command'),
    ('zfsvol',  'python36-pyzfs',       OPTIONAL, 'libzfs_core',     'faster snapshot and clone'),
)


def needs(sr_type, need=None):
    """The NEEDS lines of a driver (only REQUIRED or OPTIONAL ones, if ``need`` says)."""
    return [n for n in NEEDS if n[0] == sr_type and need in (None, n[2])]


def package_for(sr_type, uses):
    """The package that gives driver ``sr_type`` the module or command ``uses``."""
    for n in needs(sr_type):
        if n[3] == uses:
            return n[1]
    raise KeyError('%s: no NEEDS line uses %r' % (sr_type, uses))


def install_hint(sr_type):
    """'install a, b and c; optionally d for ...' for a driver, '' when it needs nothing."""
    def listed(names):
        return ', '.join(names[:-1]) + ' and ' + names[-1] if len(names) > 1 else names[0]
    required = [n[1] for n in needs(sr_type, REQUIRED)]
    optional = ['%s for %s' % (n[1], n[4]) for n in needs(sr_type, OPTIONAL)]
    parts = ['install ' + listed(required)] if required else []
    parts += ['optionally ' + listed(optional)] if optional else []
    return '; '.join(parts)


def load(name):
    """The driver class for an SR type, or for an explicit 'module.path:Class'."""
    target = DRIVERS.get(name, name)
    if ':' not in target:
        raise SRError('SRUnknownType', 'no srkit driver for SR type %r' % name)
    module_name, _, class_name = target.partition(':')
    try:
        module = __import__(module_name, fromlist=[class_name])
    except ImportError as e:
        raise missing_library(name, e)
    return getattr(module, class_name)


def missing_library(name, error):
    """The fault for an ImportError, whenever the driver hit it (drivers import their
    backend bindings lazily, so most surface long after ``load``): SRUnavailable (47)
    with the one-line fix, the same for every driver."""
    hint = install_hint(name)
    return SRError('SRUnavailable', 'cannot load the %s driver (%s)%s'
                   % (name, error, '; ' + hint if hint else ''))
