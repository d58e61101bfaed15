"""The FUSE mount of a Gluster volume: device-config rules, mount, reuse, unmount.

Every step is bounded: the volfile servers are probed with a TCP connect first (a
dead or unroutable server costs ``connect_timeout``, not the kernel's minutes), the
mount helper runs under a deadline and, when it overruns, it and the glusterfs
client it started for this mount point are killed. A mount left by a crashed
process is recognised in /proc/mounts and reused when it answers, lazily unmounted
when its client is gone ("Transport endpoint is not connected"), never stacked.
"""

import errno
import os
import re
import signal
import time

from framework.errors import SRError
from framework.options import config_error

GLUSTERD_PORT = 24007
FSTYPE = 'fuse.glusterfs'
_HOST = re.compile(r'^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?'
                   r'(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*'
                   r'|\[[0-9A-Fa-f:.]+\])$')
_VOLUME = re.compile(r'^[A-Za-z0-9_.-]{1,64}$')


def parse_server(text):
    """``host:/volume`` -> (host, volume); ConfigParamsMissing naming ``server`` else."""
    host, sep, path = (text or '').rpartition(':')
    volume = path[1:] if path.startswith('/') else ''
    if not sep or not _HOST.match(host) or not _VOLUME.match(volume) or volume in ('.', '..'):
        config_error(invalid=['server=%s (expected <host>:/<volume>)' % text])
    return host, volume


def parse_backups(text):
    """``host:host:…`` -> [host, …] (an IPv6 address goes in brackets)."""
    if not text:
        return []
    hosts = re.findall(r'\[[^\]]*\]|[^:]+', text)
    if ':'.join(hosts) != text or not all(_HOST.match(h) for h in hosts):
        config_error(invalid=['backupservers=%s (expected <host>:<host>...)' % text])
    return hosts


def validate(config):
    """Check every key at once; return (host, volume, backups)."""
    invalid = []
    host = volume = None
    backups = []
    try:
        host, volume = parse_server(config.get('server'))
    except SRError as e:
        invalid.append(e.detail.split(': ', 1)[-1])
    try:
        backups = parse_backups(config.get('backupservers'))
    except SRError as e:
        invalid.append(e.detail.split(': ', 1)[-1])
    for key in ('mount_timeout', 'fetchattempts'):
        if config.get(key) is not None and int(config[key]) < 1:
            invalid.append('%s=%s (must be at least 1)' % (key, config[key]))
    config_error(invalid=invalid)
    return host, volume, backups


def _reachable(host, timeout):
    import socket
    name = host.strip('[]')
    try:
        sock = socket.create_connection((name, GLUSTERD_PORT), timeout)
    except (OSError, socket.error):
        return False
    sock.close()
    return True


def mounted(mountpoint):
    """The source of the Gluster mount at ``mountpoint``, or None."""
    mountpoint = os.path.realpath(mountpoint)
    found = None
    with open('/proc/mounts') as f:
        for line in f:
            fields = line.split()
            if len(fields) > 2 and fields[1] == mountpoint and fields[2] == FSTYPE:
                found = fields[0]
    return found


def healthy(mountpoint):
    try:
        os.statvfs(mountpoint)
        os.listdir(mountpoint)
        return True
    except OSError:
        return False


def _client_pids(mountpoint):
    """glusterfs client processes serving ``mountpoint`` (identified by their argv)."""
    pids = []
    for name in os.listdir('/proc'):
        if not name.isdigit():
            continue
        try:
            with open('/proc/%s/cmdline' % name, 'rb') as f:
                argv = f.read().split(b'\0')
        except (IOError, OSError):
            continue
        if argv and os.path.basename(argv[0]).startswith(b'glusterfs') and \
                mountpoint.encode() in argv:
            pids.append(int(name))
    return pids


def _run(argv, timeout, mountpoint=None):
    """Run a helper under a deadline; kill it (and this mount's client) when it overruns."""
    import subprocess
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        for pid in _client_pids(mountpoint) if mountpoint else ():
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        proc.communicate()
        return None, 'timed out after %d s' % timeout
    return proc.returncode, out.strip()


def mount(config, mountpoint, log_file=None):
    """Mount the volume at ``mountpoint`` (idempotent); SRUnavailable (47) when it cannot."""
    host, volume, backups = validate(config)
    timeout = int(config.get('mount_timeout') or 30)
    source = '%s:/%s' % (host, volume)
    current = mounted(mountpoint)
    if current is not None:
        if current == source and healthy(mountpoint):
            return False   # ours already (a crashed process may have left it): reuse
        unmount(mountpoint, timeout)
    if not os.path.isdir(mountpoint):
        os.makedirs(mountpoint, 0o700)
    servers = [host] + backups
    probe = min(5.0, float(timeout))
    if not any(_reachable(h, probe) for h in servers):
        raise SRError('SRUnavailable', 'no Gluster volfile server answers on port %d: %s'
                      % (GLUSTERD_PORT, ', '.join(servers)))
    options = ['direct-io-mode=disable']
    if backups:
        options.append('backup-volfile-servers=' + ':'.join(backups))
    if config.get('fetchattempts'):
        options.append('fetch-attempts=%d' % int(config['fetchattempts']))
    if log_file:
        options.append('log-file=' + log_file)
    code, out = _run(['mount', '-t', 'glusterfs', '-o', ','.join(options), source,
                      mountpoint], timeout, mountpoint)
    if code != 0 or mounted(mountpoint) != source or not healthy(mountpoint):
        if mounted(mountpoint) is not None:
            unmount(mountpoint, timeout)
        raise SRError('SRUnavailable', 'mounting Gluster volume %s failed: %s'
                      % (source, out or 'mount exited %s' % code))
    return True


def unmount(mountpoint, timeout=30):
    """Unmount (idempotent); lazily when the client is gone or the mount stays busy."""
    if mounted(mountpoint) is None:
        return False
    code, out = _run(['umount', mountpoint], timeout)
    if mounted(mountpoint) is not None:
        if code is None or 'not connected' in (out or '') or not healthy(mountpoint):
            _run(['umount', '-l', mountpoint], timeout)
        else:
            raise SRError('SRInUse', 'cannot unmount %s: %s' % (mountpoint, out))
    deadline = time.time() + timeout
    while _client_pids(mountpoint) and time.time() < deadline:
        time.sleep(0.05)
    return True


def ensure_healthy(mountpoint):
    """SRUnavailable unless the mount answers (a dead client gives ENOTCONN)."""
    try:
        os.statvfs(mountpoint)
    except OSError as e:
        raise SRError('SRUnavailable', 'Gluster mount %s does not answer: %s'
                      % (mountpoint, os.strerror(e.errno or errno.EIO)))
