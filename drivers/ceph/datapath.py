"""Making an RBD image a block device on this host.

``datapath`` device-config:
  krbd  the kernel rbd client (``/sys/bus/rbd``); needs a kernel that supports
        the image features (object-map/fast-diff need Linux >= 5.3).
  nbd   ``rbd-nbd`` (librbd in userspace behind /dev/nbdX); XCP-ng 8.x dom0's
        4.19 kernel is too old for krbd with object-map, so this is the choice
        there. Needs the ``rbd-nbd`` binary and the nbd module.
  fuse  ``rbd-fuse`` exposes the image as a file, a loop device makes it a
        block device. Slow, but needs neither kernel module: the path the test
        rig verifies. rbd-fuse cannot open snapshots, so a snapshot is attached
        through a temporary COW clone (made by the driver).
  auto  nbd if usable, else krbd if usable, else fuse.

Every attachment is recorded in ``<state_dir>/dp.<vdi uuid>.json`` so detach
(a later, separate process) knows what to undo. Helper daemons are started in
their own session with stdio on a log file: they outlive the driver process
and never hold xapi's pipes open.
"""

import errno
import os
import time

from framework.errors import SRError
from drivers.ceph import helper_files
from drivers.files import fusedev
from drivers.files.fusedev import (  # noqa: F401 (records: also used by the driver)
    load_record, save_record, drop_record, records, record_path)

_which, _run, _mounted, _alive = fusedev.which, fusedev.run, fusedev.mounted, fusedev.alive
_backing_of, _cmdline_has = fusedev.backing_of, fusedev.cmdline_has

CHOICES = ('auto', 'krbd', 'nbd', 'fuse')
START_TIMEOUT = 20.0


def choose(wanted):
    """The datapath to use on this host for device-config ``datapath``."""
    if wanted and wanted != 'auto':
        return wanted
    if _which('rbd-nbd') and (os.path.exists('/sys/module/nbd') or os.path.exists('/dev/nbd0')):
        return 'nbd'
    if os.path.exists('/sys/bus/rbd/add_single_major') and _kernel_at_least(5, 3):
        return 'krbd'
    if _which('rbd-fuse'):
        return 'fuse'
    raise SRError('VDIUnavailable', 'no RBD datapath on this host: install rbd-nbd (and load '
                  'the nbd module), or rbd-fuse; or use a kernel with krbd >= 5.3')


def _kernel_at_least(major, minor):
    try:
        parts = os.uname()[2].split('.')
        return (int(parts[0]), int(parts[1].split('-')[0])) >= (major, minor)
    except (ValueError, IndexError):
        return False


# --- fuse + loop ----------------------------------------------------------------------

def fuse_attach(state_dir, config, pool, namespace, image, writable):
    import subprocess
    rbd_fuse = _which('rbd-fuse')
    if not rbd_fuse:
        raise SRError('VDIUnavailable', 'datapath fuse needs the rbd-fuse program')
    mount = os.path.join(state_dir, 'fuse', image)
    if not os.path.isdir(mount):
        os.makedirs(mount)
    record = {'kind': 'fuse', 'mount': mount, 'image': image, 'pid': 0, 'loop': ''}
    if not _mounted(mount):
        conf, ceph_args = helper_files.client_files(state_dir, config)
        args = [rbd_fuse, '-f', '-c', conf, '-p', pool]
        if namespace:
            args.append('--namespace=%s' % namespace)
        args += ['--image=%s' % image, mount]
        env = dict(os.environ)
        env['CEPH_ARGS'] = '%s %s' % (ceph_args,
                                      helper_files.admin_socket_arg(state_dir, image, True))
        log = open(os.path.join(state_dir, 'rbd-fuse.%s.log' % image), 'ab')
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                env=env, close_fds=True, start_new_session=True,
                                cwd=state_dir)
        log.close()
        record['pid'] = proc.pid
        deadline = time.time() + START_TIMEOUT
        while not (_mounted(mount) and os.path.exists(os.path.join(mount, image))):
            if proc.poll() is not None:
                raise SRError('VDIUnavailable', 'rbd-fuse for %s/%s/%s exited with %s; see %s'
                              % (pool, namespace, image, proc.returncode, log.name))
            if time.time() > deadline:
                proc.kill()
                raise SRError('VDIUnavailable', 'rbd-fuse for %s did not come up in %d s'
                              % (image, START_TIMEOUT))
            time.sleep(0.02)
    path = os.path.join(mount, image)
    args = ['losetup', '--find', '--show', '--direct-io=on']
    if not writable:
        args.append('--read-only')
    record['loop'] = _run(args + [path])
    return record


def fuse_detach(record):
    fusedev.detach(record)
    try:   # a killed rbd-fuse leaves its admin socket behind
        os.unlink(os.path.join(os.path.dirname(os.path.dirname(record.get('mount') or '/x/y')),
                               'asok', '%s.asok' % record.get('image')))
    except OSError:
        pass


def refresh_size(record):
    """Make the block device follow a grown image (online resize)."""
    if record.get('kind') == 'fuse' and record.get('loop'):
        _run(['losetup', '--set-capacity', record['loop']])
    # krbd and rbd-nbd follow the image size by themselves (header watch)


# --- rbd-nbd (real hosts; not verifiable on the test rig: no nbd module) -------------------

def nbd_attach(state_dir, config, pool, namespace, image, snap, writable):
    conf, ceph_args = helper_files.client_files(state_dir, config)
    spec = '/'.join(p for p in (pool, namespace, image) if p)
    args = [_which('rbd-nbd') or 'rbd-nbd', 'map', '-c', conf]
    if snap:
        args += ['--snap', snap]
    if not writable:
        args.append('--read-only')
    env = dict(os.environ)
    env['CEPH_ARGS'] = ceph_args + ' ' + helper_files.admin_socket_arg(state_dir, image)
    device = _run(args + [spec], env=env).splitlines()[-1].strip()
    if not device.startswith('/dev/nbd'):
        raise SRError('VDIUnavailable', 'rbd-nbd map %s gave no device' % spec)
    return {'kind': 'nbd', 'device': device, 'image': image}


def nbd_detach(record):
    if record.get('device') and os.path.exists(record['device']):
        _run([_which('rbd-nbd') or 'rbd-nbd', 'unmap', record['device']])


# --- krbd (real hosts with a recent kernel; not verifiable here) -------------------------

def krbd_attach(config, pool, namespace, image, snap, writable, mon_addrs):
    opts = ['name=%s' % (config.get('user') or 'admin')]
    if config.get('key'):
        opts.append('secret=%s' % config['key'])
    if namespace:
        opts.append('_pool_ns=%s' % namespace)
    if not writable:
        opts.append('ro')
    line = '%s %s %s %s %s' % (mon_addrs, ','.join(opts), pool, image, snap or '-')
    fd = os.open('/sys/bus/rbd/add_single_major', os.O_WRONLY)
    try:
        os.write(fd, line.encode())
    except OSError as e:
        raise SRError('VDIUnavailable', 'krbd map of %s/%s failed: %s'
                      % (pool, image, os.strerror(e.errno)))
    finally:
        os.close(fd)
    dev_id = _krbd_find(pool, namespace, image, snap or '-')
    if dev_id is None:
        raise SRError('VDIUnavailable', 'krbd mapped %s but no device appeared' % image)
    return {'kind': 'krbd', 'device': '/dev/rbd%s' % dev_id, 'id': dev_id, 'image': image}


def _krbd_find(pool, namespace, image, snap):
    base = '/sys/bus/rbd/devices'
    for dev_id in sorted(os.listdir(base)) if os.path.isdir(base) else ():
        values = {}
        for attr in ('pool', 'pool_ns', 'name', 'current_snap'):
            try:
                with open(os.path.join(base, dev_id, attr)) as f:
                    values[attr] = f.read().strip()
            except (IOError, OSError):
                values[attr] = ''
        if (values['pool'], values['pool_ns'], values['name'], values['current_snap']) == \
                (pool, namespace, image, snap):
            return dev_id
    return None


def krbd_detach(record):
    try:
        fd = os.open('/sys/bus/rbd/remove_single_major', os.O_WRONLY)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return
        raise
    try:
        os.write(fd, str(record['id']).encode())
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise SRError('VDIUnavailable', 'krbd unmap of %s failed: %s'
                          % (record.get('device'), os.strerror(e.errno)))
    finally:
        os.close(fd)


def device_of(record):
    return record.get('loop') or record.get('device')


def detach(record):
    kind = record.get('kind')
    if kind == 'fuse':
        fuse_detach(record)
    elif kind == 'nbd':
        nbd_detach(record)
    elif kind == 'krbd':
        krbd_detach(record)
