"""Pools: creating one on the SR's devices, checking features, probing what exists."""

import os
import stat

from framework.errors import SRError
from framework.options import config_error
from drivers.zfs import layout as L
from drivers.zfs import options as O
from drivers.zfs.process import ZfsError


def pool_of(dataset):
    return dataset.split('/', 1)[0]


def _signatures(device):
    """What blkid finds on a device (filesystem, partition table, zfs label), or ''."""
    import subprocess
    try:
        proc = subprocess.Popen(['blkid', '-p', '-o', 'export', device], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True)
        out, _ = proc.communicate(timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return ''
    found = [line for line in out.splitlines()
             if line.startswith(('TYPE=', 'PTTYPE=', 'USAGE='))]
    return ', '.join(found)


def ensure_pool(zfs, config, sr_uuid):
    """Make sure the pool of ``config['pool']`` is there; create it on ``devices`` if asked."""
    pool = pool_of(config['pool'])
    names = [p[0] for p in zfs.pools()]
    if pool in names:
        return False
    devices = O.devices(config)
    if not devices:
        try:   # exported, e.g. after a reinstall: bring it back rather than fail
            zfs.run(['zpool', 'import', '-N', pool], timeout=120)
            return False
        except ZfsError:
            raise SRError('SRUnavailable', 'ZFS pool %s does not exist (give devices=... '
                          'to create it)' % pool)
    bad = [d for d in devices if not os.path.exists(d) or
           not stat.S_ISBLK(os.stat(d).st_mode)]
    if bad:
        config_error((), ['devices=%s (not a block device: %s)' % (config['devices'],
                                                                   ', '.join(bad))])
    force = config.get('force') == 'true'
    if not force:
        used = [(d, _signatures(d)) for d in devices]
        used = ['%s (%s)' % (d, s) for d, s in used if s]
        if used:
            raise SRError('SRInUse', 'refusing to create pool %s: %s hold data; set '
                          'force=true to overwrite' % (pool, '; '.join(used)))
    try:
        zfs.create_pool(pool, devices, config.get('ashift'), force,
                        {L.POOL_PROP: sr_uuid})
    except ZfsError as e:
        raise e.fault('SRUnavailable', 'creating pool %s' % pool)
    return True


def check_compression(zfs, config):
    feature = O.required_feature(config.get('compression'))
    if feature and zfs.pool_feature(pool_of(config['pool']), feature) not in ('enabled',
                                                                              'active'):
        config_error((), ['compression=%s (pool %s does not have feature@%s enabled)'
                          % (config['compression'], pool_of(config['pool']), feature)])


def probe(zfs, config):
    """Every pool, and every filesystem under ``pool``; SRs carry their uuid."""
    found = []
    try:
        pools = zfs.pools()
    except ZfsError as e:
        raise e.fault('SRUnavailable', 'listing pools')
    for name, size, alloc, free in pools:
        found.append({'name_label': name, 'size': size, 'aggregate': name,
                      'name_description': 'ZFS pool (%d bytes free)' % free})
    root = config.get('pool')
    if root and pool_of(root) in [p[0] for p in pools]:
        try:
            filesystems = zfs.filesystems(root)
        except ZfsError as e:
            if not e.missing:
                raise e.fault('SRUnavailable', 'listing %s' % root)
            filesystems = []
        for name, sr, used, avail in filesystems:
            is_sr = bool(sr) and L.leaf(name) == sr
            entry = {'name_label': name, 'size': used + avail, 'aggregate': pool_of(name),
                     'name_description': 'srkit zfsvol SR' if is_sr else 'ZFS dataset'}
            if is_sr:
                entry['uuid'] = sr
            found.append(entry)
    return found
