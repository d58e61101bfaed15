"""SR type -> driver class, imported only when that type is used (fsspec-style).

Each entry names the class by path and says what to install when the import
fails, so a missing backend library gives an admin a one-line fix instead of
a traceback.
"""

from framework.errors import SRError

DRIVERS = {
    # type: (module:Class, install hint)
    'local': ('drivers.local.driver:LocalDriver', ''),
    'rbd': ('drivers.ceph.driver:RBDDriver',
            'install python3-rbd and python3-rados (and rbd-nbd for the nbd datapath)'),
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
        raise SRError('SRUnavailable', 'cannot load the %s driver (%s)%s'
                      % (name, e, '; ' + hint if hint else ''))
    return getattr(module, class_name)
