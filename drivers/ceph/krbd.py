"""krbd: the kernel's RBD client maps an image as ``/dev/rbdN`` (``/sys/bus/rbd``).

The line written to ``add_single_major`` stays readable in
``/sys/bus/rbd/devices/N/config_info``, so it never holds the secret: the key goes
into this process's kernel keyring (type ``ceph``, as the rbd CLI does) and the
line names it (``key=<name>``); the kernel copies the key when it maps. That name is
the attach's *token*, unique per attach, so it also marks the device as this
attach's own: a device is returned or unmapped only when its config_info names the
token. Other mappings of the same image (a stale one, another attach, an admin's
``rbd map``) are never touched.

Monitors come from the cluster's monmap (the driver is connected), so device-configs
naming them only in ``conf``, or only by v2 address, work. The kernel speaks msgr2
from Linux 5.11: then v2 addresses with ``ms_mode=prefer-crc`` (secure when the
cluster asks for it), else v1 addresses. ``noshare`` gives each mapping its own
kernel client, so fencing one VDI's holder blocklists exactly that client.
"""

import errno
import os
import time

from framework.errors import SRError
from drivers.ceph import credentials
from framework.files.fusedev import run

SYSFS = '/sys/bus/rbd'
DEVICES = SYSFS + '/devices'
# add_key(2) has no wrapper in libc; keyutils' library may be absent from dom0
_SYS_ADD_KEY = {'x86_64': 248, 'aarch64': 217}
_KEY_SPEC_PROCESS_KEYRING = -2
UNMAP_BUSY_WAIT = 10.0   # seconds an open device (udev's probe) may delay an unmap


def kernel_at_least(major, minor):
    try:
        parts = os.uname()[2].split('.')
        return (int(parts[0]), int(parts[1].split('-')[0])) >= (major, minor)
    except (ValueError, IndexError):
        return False


def usable():
    """krbd can map images with object-map/fast-diff from Linux 5.3."""
    from drivers.ceph.datapath import module_available
    return module_available('rbd') and kernel_at_least(5, 3)


def monitors(rados):
    """(addresses, ms_mode or None) for the kernel, from the cluster's monmap."""
    import json
    ret, out, err = rados.mon_command(json.dumps({'prefix': 'mon dump', 'format': 'json'}),
                                      b'', timeout=15)
    if ret != 0:
        raise SRError('VDIUnavailable', 'krbd: cannot read the monitor map (%d): %s'
                      % (ret, err))
    v1, v2 = [], []
    for mon in json.loads(out.decode('utf-8')).get('mons', ()):
        kinds = dict((a.get('type'), a.get('addr'))
                     for a in mon.get('public_addrs', {}).get('addrvec', ()))
        if kinds.get('v1'):
            v1.append(kinds['v1'])
        if kinds.get('v2'):
            v2.append(kinds['v2'])
    if kernel_at_least(5, 11) and v2:
        return ','.join(v2), 'prefer-crc'
    if v1:
        return ','.join(v1), None
    raise SRError('VDIUnavailable', 'krbd: the monitors have no msgr v1 address and this '
                  'kernel (%s) speaks msgr2 only from Linux 5.11' % os.uname()[2])


def map_image(rados, config, pool, namespace, image, snap, writable, token):
    """Map ``pool/namespace/image[@snap]``; the record of the new device."""
    _load_module()
    key = credentials.secret(config, rados.conf_get)
    user = config.get('user') or 'admin'
    if not key:
        raise SRError('VDIUnavailable', 'datapath krbd needs the cephx key of client.%s: '
                      'device-config key (key_secret), keyring, or a conf naming a keyring'
                      % user)
    addrs, ms_mode = monitors(rados)
    _add_key(token, key)
    opts = ['name=%s' % user, 'key=%s' % token, 'noshare']
    if ms_mode:
        opts.append('ms_mode=%s' % ms_mode)
    if namespace:
        opts.append('_pool_ns=%s' % namespace)
    if not writable:
        opts.append('ro')
    line = '%s %s %s %s %s' % (addrs, ','.join(opts), pool, image, snap or '-')
    try:
        _write(SYSFS + '/add_single_major', line)
    except OSError as e:
        raise SRError('VDIUnavailable', 'krbd map of %s/%s/%s failed: %s (see the kernel log)'
                      % (pool, namespace, image, os.strerror(e.errno)))
    dev_id = find(token)
    if dev_id is None:
        raise SRError('VDIUnavailable', 'krbd mapped %s but no device names this attach'
                      % image)
    return {'kind': 'krbd', 'device': '/dev/rbd%s' % dev_id, 'id': dev_id, 'token': token,
            'image': image}


def find(token):
    """The id of the device whose config_info names ``token``, or None."""
    if not token:
        return None
    try:
        ids = os.listdir(DEVICES)
    except OSError:
        return None
    want = 'key=%s' % token
    for dev_id in ids:
        fields = _read(os.path.join(DEVICES, dev_id, 'config_info')).split()
        if len(fields) > 1 and want in fields[1].split(','):
            return dev_id
    return None


def alive(record):
    return bool(record.get('id')) and find(record.get('token')) == record['id']


def unmap(record):
    """Unmap the device of this attach, wherever it is; nothing else."""
    dev_id = find(record.get('token'))
    if dev_id is None:
        return
    deadline = time.time() + UNMAP_BUSY_WAIT
    how = dev_id
    while True:
        try:
            _write(SYSFS + '/remove_single_major', how)
            return
        except OSError as e:
            if e.errno == errno.ENOENT:
                return
            if e.errno != errno.EBUSY or how != dev_id:
                raise SRError('VDIUnavailable', 'krbd unmap of /dev/rbd%s failed: %s'
                              % (dev_id, os.strerror(e.errno)))
        if time.time() > deadline:
            how = '%s force' % dev_id   # still open: fail its I/O rather than hang
        else:
            time.sleep(0.1)


def _load_module():
    if not os.path.exists(SYSFS + '/add_single_major'):
        try:
            run(['modprobe', 'rbd'], timeout=30)
        except (SRError, OSError):
            pass
    if not os.path.exists(SYSFS + '/add_single_major'):
        raise SRError('VDIUnavailable', 'datapath krbd needs the rbd kernel module '
                      '(modprobe rbd failed)')


def _add_key(description, key):
    """Put the cephx ``key`` into this process's keyring as a ``ceph`` key."""
    import base64
    import binascii
    import ctypes
    try:
        payload = base64.b64decode(key.encode('ascii'))
    except (binascii.Error, ValueError, UnicodeError):
        raise SRError('ConfigParamsMissing', 'device-config has invalid values: key '
                      '(not a base64 cephx key)')
    nr = _SYS_ADD_KEY.get(os.uname()[4])
    if nr is None:
        raise SRError('VDIUnavailable', 'krbd: add_key is not known on %s' % os.uname()[4])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    serial = libc.syscall(ctypes.c_long(nr), ctypes.c_char_p(b'ceph'),
                          ctypes.c_char_p(description.encode('ascii')),
                          ctypes.c_char_p(payload), ctypes.c_size_t(len(payload)),
                          ctypes.c_long(_KEY_SPEC_PROCESS_KEYRING))
    if serial < 0:
        raise SRError('VDIUnavailable', 'krbd: adding the key to the kernel keyring failed: '
                      '%s' % os.strerror(ctypes.get_errno()))


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (IOError, OSError):
        return ''


def _write(path, text):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
