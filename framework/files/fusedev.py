"""A userspace block device: a helper daemon shows a volume as a file in a FUSE
mount, and a loop device (O_DIRECT) makes that file a block device.

Shared by drivers whose datapath works this way here (rbd-fuse for rbd, nbdfuse +
nbdkit for s3). Every attachment is recorded in ``<state_dir>/dp.<vdi uuid>.json``
so that detach, a later and separate process, knows what to undo; detach never
blocks for long, even when the daemon died or stopped answering.
"""

import os
import time

from framework.errors import SRError


def which(name):
    for d in os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin').split(':') + \
            ['/usr/bin', '/usr/sbin']:
        path = os.path.join(d, name)
        if os.access(path, os.X_OK):
            return path
    return None


def run(args, env=None, timeout=60):
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


def umount(mount, pid, timeout):
    """umount in the background; if the FUSE daemon does not answer within
    ``timeout``, kill it (that aborts the FUSE connection and lets umount finish)."""
    import subprocess
    proc = subprocess.Popen(['umount', mount], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            close_fds=True)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(pid, mount)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if mounted(mount):
        stop(pid, mount)
        run(['umount', '-l', mount], timeout=10)


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


def mounted(path):
    try:
        with open('/proc/mounts') as f:
            return any(line.split()[1] == path for line in f)
    except (IOError, OSError, IndexError):
        return False


def alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(')')[-1].split()[0] != 'Z'
    except (IOError, OSError, IndexError):
        return False


def detach(record):
    """Undo an attachment. A daemon whose backend client was fenced may never
    answer FUSE requests again: then the daemon is killed, which aborts the FUSE
    connection, and the mount is detached lazily. Never blocks for long."""
    loop, mount, pid = record.get('loop'), record.get('mount'), record.get('pid') or 0
    if loop and on_mount(loop, mount):
        try:
            run(['losetup', '--detach', loop], timeout=10)
        except SRError:
            stop(pid, mount)
            if on_mount(loop, mount):
                run(['losetup', '--detach', loop], timeout=10)
    if mount and mounted(mount):
        umount(mount, pid, 10)
    if pid:
        deadline = time.time() + 10
        while alive(pid) and time.time() < deadline:
            time.sleep(0.02)
        stop(pid, mount)
    if mount:
        try:
            os.rmdir(mount)
        except OSError:
            pass


def stop(pid, mount):
    """Kill the daemon we started (pid recorded at attach, cmdline checked)."""
    if pid and mount and alive(pid) and cmdline_has(pid, mount):
        try:
            os.kill(pid, 9)
        except OSError:
            pass
        deadline = time.time() + 5
        while alive(pid) and time.time() < deadline:
            time.sleep(0.02)


def on_mount(loop, mount):
    """Whether ``loop`` is a device on a file of this attachment's ``mount`` (any
    device when no mount is named). A record can outlive its attachment (a killed
    command): the loop number it names may be serving another VDI by now, and
    detaching by number alone once pulled a fresh attachment's device away."""
    backing = backing_of(loop)
    if backing is None:
        return False
    return not mount or backing.startswith(mount.rstrip('/') + '/')


def backing_of(loop):
    try:
        with open('/sys/block/%s/loop/backing_file' % os.path.basename(loop)) as f:
            return f.read().strip()
    except (IOError, OSError):
        return None


def cmdline_has(pid, text):
    try:
        with open('/proc/%d/cmdline' % pid, 'rb') as f:
            return text.encode() in f.read()
    except (IOError, OSError):
        return False
