"""SR type -> driver class, imported only when that type is used (fsspec-style).

Each entry names the class by path and says what to install when an import
fails, so a missing backend library gives an admin a one-line fix instead of
a traceback, whether it fails loading the driver or in the middle of a command
(``framework.entry`` routes every ImportError here).
"""

from framework.errors import SRError

DRIVERS = {
    # type: (module:Class, install hint)
    'local': ('drivers.local.driver:LocalDriver', ''),
    'rbd': ('drivers.ceph.driver:RBDDriver',
            'install python3-rbd and python3-rados (and rbd-nbd for the nbd datapath)'),
    'gluster': ('drivers.gluster.driver:GlusterDriver',
                'install glusterfs-fuse (the FUSE client, mount.glusterfs); glusterfs-api '
                'for server_copy=reflink'),
    's3': ('drivers.s3.driver:S3Driver',
           'install python3-boto3 and python3-zstandard, and for attach nbd-client '
           '(or, where the nbd module is missing, libnbd-bin for nbdfuse and fuse3)'),
    'zfsvol': ('drivers.zfs.driver:ZFSVolDriver',
               'install zfsutils-linux (the zfs command) and optionally python3-pyzfs'),
}


def load(name):
    """The driver class for an SR type, or for an explicit 'module.path:Class'."""
    target, hint = DRIVERS.get(name, (name, ''))
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
    hint = DRIVERS.get(name, ('', ''))[1]
    return SRError('SRUnavailable', 'cannot load the %s driver (%s)%s'
                   % (name, error, '; ' + hint if hint else ''))
