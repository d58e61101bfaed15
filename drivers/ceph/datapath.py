"""Making an RBD image a block device on this host.

``datapath`` device-config:
  krbd  the kernel rbd client (``/sys/bus/rbd``, krbd.py); needs a kernel that
        supports the image features (object-map/fast-diff need Linux >= 5.3).
  nbd   ``rbd-nbd`` (librbd in userspace behind /dev/nbdX, rbd_nbd.py); XCP-ng
        8.x dom0's 4.19 kernel is too old for krbd with object-map, so this is
        the choice there. Needs the ``rbd-nbd`` package and the nbd module.
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

import os
import time

from framework.errors import SRError
from drivers.ceph import credentials
from framework.files import fusedev
from framework.files.fusedev import (  # noqa: F401 (records: also used by the driver)
    load_record, save_record, drop_record, records, record_path)

_which, _run, _mounted, _alive = fusedev.which, fusedev.run, fusedev.mounted, fusedev.alive
_backing_of, _cmdline_has = fusedev.backing_of, fusedev.cmdline_has

CHOICES = ('auto', 'krbd', 'nbd', 'fuse')
START_TIMEOUT = 20.0


def choose(wanted):
    """The datapath to use on this host for device-config ``datapath``."""
    from drivers.ceph import krbd, rbd_nbd
    if wanted and wanted != 'auto':
        return wanted
    if rbd_nbd.usable():
        return 'nbd'
    if krbd.usable():
        return 'krbd'
    if _which('rbd-fuse'):
        return 'fuse'
    raise SRError('VDIUnavailable', 'no RBD datapath on this host: install the rbd-nbd '
                  'package (and the nbd kernel module), or rbd-fuse; or use a kernel '
                  'with krbd >= 5.3 (docs/install.md)')


def check_tools(wanted):
    """sr_create: SRUnavailable naming what this host lacks for ``datapath``."""
    from drivers.ceph import krbd, rbd_nbd
    missing = None
    if wanted == 'nbd' and not _which('rbd-nbd'):
        missing = 'datapath nbd needs the rbd-nbd program: %s' % rbd_nbd.PACKAGE_HINT
    elif wanted == 'nbd' and not module_available('nbd'):
        missing = 'datapath nbd needs the nbd kernel module, which this kernel (%s) lacks' \
            % os.uname()[2]
    elif wanted == 'krbd' and not krbd.usable():
        missing = 'datapath krbd needs the rbd kernel module of Linux >= 5.3 (this is %s)' \
            % os.uname()[2]
    elif wanted == 'fuse' and not _which('rbd-fuse'):
        missing = 'datapath fuse needs the rbd-fuse program: install the rbd-fuse package'
    elif wanted in (None, '', 'auto'):
        try:
            choose(wanted)
        except SRError as e:
            missing = e.detail
    if missing:
        raise SRError('SRUnavailable', missing)


def module_available(name):
    """Whether kernel module ``name`` is loaded, built in, or installed for this kernel."""
    if os.path.exists('/sys/module/%s' % name):
        return True
    base = '/lib/modules/%s' % os.uname()[2]
    for index in ('modules.dep', 'modules.builtin'):
        try:
            with open(os.path.join(base, index)) as f:
                for line in f:
                    path = line.split(':', 1)[0].strip()
                    if os.path.basename(path).split('.ko')[0] == name:
                        return True
        except (IOError, OSError):
            pass
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
        conf, ceph_args = credentials.client_files(state_dir, config)
        args = [rbd_fuse, '-f', '-c', conf, '-p', pool]
        if namespace:
            args.append('--namespace=%s' % namespace)
        args += ['--image=%s' % image, mount]
        env = dict(os.environ)
        env['CEPH_ARGS'] = '%s %s' % (ceph_args,
                                      credentials.admin_socket_arg(state_dir, image, True))
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


def device_of(record):
    return record.get('loop') or record.get('device')


def alive(record):
    """Whether the device of ``record`` still serves this attach (a killed rbd-nbd
    daemon, or an attach killed before it knew its device, leaves one that does not)."""
    from drivers.ceph import krbd, rbd_nbd
    kind = record.get('kind')
    if record.get('state') == 'mapping':
        return False
    if kind == 'nbd':
        return rbd_nbd.alive(record)
    if kind == 'krbd':
        return krbd.alive(record)
    return bool(device_of(record)) and os.path.exists(device_of(record))


def detach(record):
    from drivers.ceph import krbd, rbd_nbd
    kind = record.get('kind')
    if kind == 'fuse':
        fuse_detach(record)
    elif kind == 'nbd':
        rbd_nbd.unmap(record)
    elif kind == 'krbd':
        krbd.unmap(record)
