"""rbd-nbd: librbd in a userspace daemon behind the kernel's NBD client (``/dev/nbdN``).

``rbd-nbd map`` forks the daemon and prints the device; the daemon serves it until
``rbd-nbd unmap`` (or its death: in the ioctl mode used here the kernel then
disconnects the device, which any later map may take). So an attach records the
daemon's pid, and owns a device only while ``/sys/block/nbdN/pid`` is that daemon
and the daemon's environment carries the attach's token (``SRKIT_DATAPATH``): a
device another attach took after our daemon died is never returned or unmapped.

Snapshots are mapped by spec (``pool/namespace/image@snap``): ``--snap`` is
refused as an unknown argument by rbd-nbd 16.2.
"""

import os
import signal
import time

from framework.errors import SRError
from drivers.ceph import credentials
from framework.files.fusedev import alive as pid_alive, run, which

TOKEN_ENV = 'SRKIT_DATAPATH'
PACKAGE_HINT = 'install the rbd-nbd package (docs/install.md)'
MAP_TIMEOUT = 60
UNMAP_TIMEOUT = 10     # a fenced daemon may never answer: it is signalled after this


def usable():
    from drivers.ceph.datapath import module_available
    return bool(which('rbd-nbd')) and module_available('nbd')


def spec_of(pool, namespace, image, snap):
    spec = '/'.join(p for p in (pool, namespace, image) if p)
    return '%s@%s' % (spec, snap) if snap else spec


def map_image(state_dir, config, pool, namespace, image, snap, writable, token):
    """Map ``pool/namespace/image[@snap]``; the record of the new device."""
    binary = which('rbd-nbd')
    if not binary:
        raise SRError('VDIUnavailable', 'datapath nbd needs the rbd-nbd program: %s'
                      % PACKAGE_HINT)
    conf, ceph_args = credentials.client_files(state_dir, config)
    spec = spec_of(pool, namespace, image, snap)
    args = [binary, 'map', '-c', conf]
    if not writable:
        args.append('--read-only')
    env = dict(os.environ)
    env['CEPH_ARGS'] = '%s %s --log_file=%s' % (
        ceph_args, credentials.admin_socket_arg(state_dir, image),
        os.path.join(state_dir, 'rbd-nbd.%s.log' % image))
    env[TOKEN_ENV] = token
    device = run(args + [spec], env=env, timeout=MAP_TIMEOUT).splitlines()[-1:]
    device = device[0].strip() if device else ''
    if not device.startswith('/dev/nbd'):
        raise SRError('VDIUnavailable', 'rbd-nbd map %s gave no device' % spec)
    pid = device_pid(device)
    if not (pid and owns(pid, token)):
        raise SRError('VDIUnavailable', 'rbd-nbd mapped %s on %s, but that device is not '
                      'served by the daemon it started' % (spec, device))
    return {'kind': 'nbd', 'device': device, 'pid': pid, 'token': token, 'image': image}


def device_pid(device):
    """The pid serving ``/dev/nbdN`` (0 when it is not connected)."""
    try:
        with open('/sys/block/%s/pid' % os.path.basename(device)) as f:
            return int(f.read().strip() or 0)
    except (IOError, OSError, ValueError):
        return 0


def owns(pid, token):
    """Whether process ``pid`` was started by the attach holding ``token``."""
    try:
        with open('/proc/%d/environ' % pid, 'rb') as f:
            env = f.read().split(b'\0')
    except (IOError, OSError):
        return False
    return ('%s=%s' % (TOKEN_ENV, token)).encode() in env


def alive(record):
    pid = int(record.get('pid') or 0)
    return bool(pid and record.get('device')) and device_pid(record['device']) == pid \
        and owns(pid, record.get('token') or '')


def unmap(record):
    """Disconnect this attach's device and end its daemon; nothing else. A daemon
    that died left nothing to unmap; one that does not answer (fenced, stuck) is
    killed, which makes the kernel drop the device."""
    token = record.get('token') or ''
    pid = int(record.get('pid') or 0)
    if pid and owns(pid, token):
        pids = [pid]
    else:   # killed before it said which daemon it started: find them by the token
        pids = [p for p in _processes() if owns(p, token)] if token else []
    device = record.get('device')
    if device and pid in pids and device_pid(device) == pid:
        try:
            run([which('rbd-nbd') or 'rbd-nbd', 'unmap', device], timeout=UNMAP_TIMEOUT)
        except (SRError, OSError):
            pass   # the signals below finish it
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        pids = [p for p in pids if pid_alive(p) and owns(p, token)]
        if not pids:
            break
        for p in pids:
            try:
                os.kill(p, sig)
            except OSError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and any(pid_alive(p) for p in pids):
            time.sleep(0.05)
    if device and pid and device_pid(device) == pid:
        raise SRError('VDIUnavailable', '%s is still served by rbd-nbd (pid %d) after unmap'
                      % (device, pid))


def _processes():
    for name in os.listdir('/proc'):
        if name.isdigit():
            yield int(name)
