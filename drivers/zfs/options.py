"""device-config of zfsvol SRs: the declared options and the checks across them."""

from framework.options import Option, config_error

COMPRESSION = ('on', 'off', 'lz4', 'lzjb', 'zle', 'gzip', 'zstd', 'zstd-fast') \
    + tuple('gzip-%d' % n for n in range(1, 10)) \
    + tuple('zstd-%d' % n for n in range(1, 20)) \
    + tuple('zstd-fast-%d' % n for n in list(range(1, 11)) + list(range(20, 101, 10))
            + [500, 1000])
# compression -> pool feature it needs (checked against the pool at sr_create)
FEATURE_OF = {'lz4': 'lz4_compress', 'zstd': 'zstd_compress'}

OPTIONS = (
    Option('pool', 'ZFS pool or parent dataset to hold the SR; the SR is the dataset '
           '<pool>/<SR uuid>, each VDI a zvol in it', required=True),
    Option('devices', 'comma-separated block devices to create the pool on at sr_create '
           'when it does not exist yet (destroyed again by sr_destroy)'),
    Option('force', 'create the pool even on devices that hold a filesystem, partition '
           'table or pool label', default='false', choices=('false', 'true')),
    Option('ashift', 'ashift of a pool created from devices (9..16; 12 = 4 KiB sectors)',
           kind=int),
    Option('volblocksize', 'zvol block size in bytes, a power of two from 512 to 131072; '
           'VDI sizes are rounded up to a multiple of it', default=16384, kind=int),
    Option('compression', 'compression of the SR dataset, inherited by its zvols '
           '(off, on, lz4, zstd, zstd-N, gzip-N, ...; checked against the pool\'s features; '
           'default: inherit from the pool)'),
    Option('provisioning', 'thin: sparse zvols; thick: every zvol reserves its full size '
           '(refreservation)', default='thin', choices=('thin', 'thick')),
    Option('api', 'how to drive ZFS: libzfs_core through pyzfs (python3-pyzfs) for '
           'snapshot, clone, create and destroy where it imports, else the zfs command',
           default='auto', choices=('auto', 'pyzfs', 'cli')),
    Option('udev_timeout', 'seconds vdi_attach waits for the /dev/zvol link', default=30,
           kind=int),
)


def check(config):
    """Raise 115 naming every invalid value the declarations cannot express."""
    invalid = []
    bs = config.get('volblocksize')
    if bs is not None and (bs < 512 or bs > 131072 or bs & (bs - 1)):
        invalid.append('volblocksize=%s (a power of two from 512 to 131072)' % bs)
    comp = config.get('compression')
    if comp and comp not in COMPRESSION:
        invalid.append('compression=%s (one of off, on, lz4, lzjb, zle, gzip[-N], '
                       'zstd[-N], zstd-fast[-N])' % comp)
    ashift = config.get('ashift')
    if ashift is not None and not 9 <= ashift <= 16:
        invalid.append('ashift=%s (9..16)' % ashift)
    pool = config.get('pool') or ''
    if pool and (pool.startswith('/') or pool.endswith('/') or '@' in pool or ' ' in pool):
        invalid.append('pool=%s (a pool or dataset name such as tank or tank/vms)' % pool)
    if config.get('udev_timeout') is not None and config['udev_timeout'] < 1:
        invalid.append('udev_timeout=%s (at least 1 second)' % config['udev_timeout'])
    config_error((), invalid)


def devices(config):
    return [d.strip() for d in (config.get('devices') or '').split(',') if d.strip()]


def required_feature(compression):
    """The pool feature a compression value needs, or None."""
    return FEATURE_OF.get((compression or '').split('-')[0])
