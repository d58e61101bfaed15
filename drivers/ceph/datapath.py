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

CHOICES = ('auto', 'krbd', 'nbd', 'fuse')
START_TIMEOUT = 20.0


def _which(name):
    for d in os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin').split(':') + \
            ['/usr/bin', '/usr/sbin']:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


def _run(args, env=None, timeout=60):
    """Run a helper; SRError on failure or when it outlives ``timeout`` (a process
    stuck in the kernel cannot be reaped: it is left behind rather than waited for)."""
    import subprocess
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, close_fds=True,
                            universal_newlines=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.communicate(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        raise SRError('VDIUnavailable', '%s did not finish within %d s' % (args[0], timeout))
    if proc.returncode != 0:
        raise SRError('VDIUnavailable', '%s failed (%d): %s'
                      % (' '.join(args[:2]), proc.returncode, err.strip()[-400:]))
    return out.strip()


def _umount(mount, pid, timeout):
    """umount in the background; if the FUSE daemon does not answer within
    ``timeout``, kill it (that aborts the FUSE connection and lets umount finish)."""
    import subprocess
    proc = subprocess.Popen(['umount', mount], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(pid, mount)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if _mounted(mount):
        _stop(pid, mount)
        _run(['umount', '-l', mount], timeout=10)


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


# --- records ----------------------------------------------------------------------

def record_path(state_dir, uuid):
    return os.path.join(state_dir, 'dp.%s.json' % uuid)


def load_record(state_dir, uuid):
    import json
    try:
        with open(record_path(state_dir, uuid)) as f:
            return json.load(f)
    except (IOError, OSError, ValueError):
        return None


def save_record(state_dir, uuid, record):
    import json
    path = record_path(state_dir, uuid)
    with open(path + '.tmp', 'w') as f:
        json.dump(record, f, sort_keys=True)
    os.rename(path + '.tmp', path)


def drop_record(state_dir, uuid):
    try:
        os.unlink(record_path(state_dir, uuid))
    except OSError:
        pass


def records(state_dir):
    out = {}
    for name in os.listdir(state_dir):
        if name.startswith('dp.') and name.endswith('.json'):
            rec = load_record(state_dir, name[3:-5])
            if rec:
                out[name[3:-5]] = rec
    return out


# --- fuse + loop ----------------------------------------------------------------------

def _mounted(path):
    try:
        with open('/proc/mounts') as f:
            return any(line.split()[1] == path for line in f)
    except (IOError, OSError, IndexError):
        return False


def _alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except (IOError, OSError, IndexError):
        return False


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
    """Undo fuse_attach. A datapath whose client was fenced (blocklisted) may never
    answer FUSE requests again: then the daemon is killed, which aborts the FUSE
    connection, and the mount is detached lazily. Never blocks for long."""
    loop, mount, pid = record.get('loop'), record.get('mount'), record.get('pid') or 0
    if loop and _backing_of(loop) is not None:
        try:
            _run(['losetup', '--detach', loop], timeout=10)
        except SRError:
            _stop(pid, mount)
            if _backing_of(loop) is not None:
                _run(['losetup', '--detach', loop], timeout=10)
    if mount and _mounted(mount):
        _umount(mount, pid, 10)
    if pid:
        deadline = time.time() + 10
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.02)
        _stop(pid, mount)
    if mount:
        try:
            os.rmdir(mount)
        except OSError:
            pass
        try:   # a killed daemon leaves its admin socket behind
            os.unlink(os.path.join(os.path.dirname(os.path.dirname(mount)), 'asok',
                                   '%s.asok' % record.get('image')))
        except OSError:
            pass


def _stop(pid, mount):
    """Kill the rbd-fuse we started (pid recorded at attach, cmdline checked)."""
    if pid and mount and _alive(pid) and _cmdline_has(pid, mount):
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        deadline = time.time() + 5
        while _alive(pid) and time.time() < deadline:
            time.sleep(0.02)


def _backing_of(loop):
    try:
        with open('/sys/block/%s/loop/backing_file' % os.path.basename(loop)) as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def _cmdline_has(pid, text):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return text.encode() in f.read()
    except (IOError, OSError):
        return False


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
