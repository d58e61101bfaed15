"""/dev/nbdN through the kernel's NBD client: ``nbd-client -unix <socket> /dev/nbdN``.

``nbd-client`` (package ``nbd`` on XCP-ng, which xapi-core requires; ``nbd-client`` on
Debian) does the handshake and hands the socket to the kernel (netlink, or the ioctls
on kernels without it). A device is free when ``/sys/block/nbdN/pid`` is absent; the
choice and the connect happen under the flock xapi's own nbd_client_manager takes on
dom0, so neither picks a device the other is connecting.

A device is ours only while ``/sys/block/nbdN/pid`` is the pid of the nbd-client we ran
(the kernel records the process that connected it): we record that pid before the
connect and never flush or disconnect a device that names another one.
"""

import os
import time

from framework.errors import SRError
from framework.files import fusedev

XAPI_LOCK = '/var/run/nonpersistent/nbd_client_manager'   # xapi's nbd_client_manager
TIMEOUT = 600        # s a request may take (a flush uploads chunks) before the kernel fails it
CONNECT_TIMEOUT = 60.0
PACKAGE = 'nbd-client (package nbd on XCP-ng, nbd-client on Debian)'


def available():
    """Whether this host can use the kernel client (the nbd module, loading it if needed)."""
    if not fusedev.which('nbd-client'):
        return False
    if not os.path.isdir('/sys/module/nbd'):
        try:
            fusedev.run(['modprobe', 'nbd'], timeout=30)
        except SRError:
            return False
    return os.path.isdir('/sys/module/nbd')


def missing():
    """What an admin must install or load for the kernel client, or '' when nothing."""
    if not fusedev.which('nbd-client'):
        return 'nbd-client: install %s' % PACKAGE
    if not available():
        return 'the nbd kernel module (modprobe nbd failed)'
    return ''


def connected_pid(device):
    """The pid the kernel recorded for ``device``'s connection, 0 when not connected."""
    try:
        with open('/sys/block/%s/pid' % os.path.basename(device)) as f:
            return int(f.read().strip() or 0)
    except (IOError, OSError, ValueError):
        return 0


def owned(record):
    """Whether the device the record names is still the connection we made."""
    device, pid = record.get('device'), record.get('client_pid')
    return bool(device and pid) and connected_pid(device) == pid


def _devices():
    names = [n for n in os.listdir('/sys/block') if n.startswith('nbd') and n[3:].isdigit()]
    return ['/dev/' + n for n in sorted(names, key=lambda n: int(n[3:]))]


class _HostLock(object):
    """The flock xapi's nbd_client_manager holds while it picks and connects a device."""

    def __enter__(self):
        import fcntl
        from framework import locks
        path = XAPI_LOCK if os.path.isdir(os.path.dirname(XAPI_LOCK)) else \
            os.path.join(locks.root(), 'nbd_client_manager')
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path), 0o755)
        self.f = open(path, 'a')
        fcntl.flock(self.f, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        self.f.close()   # releases the flock
        return False


def connect(state_dir, socket_name, record, save):
    """Connect a free /dev/nbdN to our server's socket; fills record['device'] and
    record['client_pid'] and calls ``save(record)`` before the device can exist."""
    import subprocess
    nbd_client = fusedev.which('nbd-client')
    if not nbd_client:
        raise SRError('VDIUnavailable', 'the s3 datapath nbd needs %s' % PACKAGE)
    with _HostLock():
        free = [d for d in _devices() if not connected_pid(d)]
        if not free:
            raise SRError('VDIUnavailable', 'no free /dev/nbdN on this host (all %d in use; '
                          'load nbd with a larger nbds_max)' % len(_devices()))
        device = free[0]
        log = open(os.path.join(state_dir, 'nbd-client.%s.log' % record['vdi']), 'ab')
        # nbd-client runs only once the record names its pid: sh waits for a line on its
        # stdin, then execs it under the same pid (a killed attach closes the pipe: sh
        # exits, nothing is connected). -nofork: the pid the kernel records is that one
        # (netlink: it exits once connected; the ioctl fallback stays until the disconnect)
        proc = subprocess.Popen(['/bin/sh', '-c', 'read go && exec "$0" "$@"', nbd_client,
                                 '-unix', socket_name, device, '-block-size', '512',
                                 '-timeout', str(TIMEOUT), '-nofork'], cwd=state_dir,
                                stdin=subprocess.PIPE, stdout=log, stderr=log,
                                close_fds=True, start_new_session=True)
        log.close()
        record.update(device=device, client_pid=proc.pid)
        save(record)
        proc.stdin.write(b'go\n')
        proc.stdin.close()
        deadline = time.time() + CONNECT_TIMEOUT
        while connected_pid(device) != proc.pid:
            if proc.poll() is not None and connected_pid(device) != proc.pid:
                raise SRError('VDIUnavailable', 'nbd-client could not connect %s (exit %s); '
                              'see %s' % (device, proc.returncode, log.name))
            if time.time() > deadline:
                proc.kill()
                raise SRError('VDIUnavailable', 'nbd-client did not connect %s in %d s'
                              % (device, CONNECT_TIMEOUT))
            time.sleep(0.02)
    return device


def flush(device):
    """fsync the device: what the kernel still caches goes to the server, and the server
    flushes to S3 (its reply comes once the data is there). False when that failed."""
    try:
        fd = os.open(device, os.O_RDONLY)
    except OSError:
        return False
    try:
        os.fsync(fd)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def disconnect(record):
    """Disconnect the record's device if it is still our connection; wait until the kernel
    has let it go. Never touches a device another connection uses. An nbd-client still
    running (a killed attach left it connecting; the ioctl fallback's) is stopped first."""
    device, pid = record.get('device'), record.get('client_pid') or 0
    if pid and fusedev.alive(pid) and fusedev.cmdline_has(pid, record.get('socket') or '\0'):
        os.kill(pid, 9)
        deadline = time.time() + 10
        while fusedev.alive(pid) and time.time() < deadline:
            time.sleep(0.02)
    if not owned(record):
        return
    fusedev.run([fusedev.which('nbd-client') or 'nbd-client', '-d', device], timeout=60)
    deadline = time.time() + 30
    while connected_pid(device) == record.get('client_pid') and time.time() < deadline:
        time.sleep(0.02)
    if connected_pid(device) == record.get('client_pid'):
        raise SRError('VDIUnavailable', '%s did not disconnect' % device)
