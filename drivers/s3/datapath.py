"""An S3 VDI as a block device: nbdkit (our python plugin) behind a block device.

Here (no nbd kernel module): ``nbdfuse`` runs ``nbdkit -s python nbd_plugin.py``
and shows the export as a file in a FUSE mount; a loop device makes it a block
device. On an XCP-ng host with the nbd module the same nbdkit can serve
/dev/nbdN through ``nbd-client`` (docs/s3.md); that path is not built yet.

The attachment is recorded in ``<state_dir>/dp.<vdi>.json`` for detach, which
runs in another process. Detach frees the loop device and the mount even when
the server died, and waits for nbdkit to finish its final flush.
"""

import json
import os
import time

from framework.errors import SRError
from drivers.files import fusedev as fuse

START_TIMEOUT = 30.0
FLUSH_TIMEOUT = 600.0
PLUGIN = os.path.join(os.path.dirname(os.path.realpath(__file__)), 'nbd_plugin.py')


def _write_private(path, doc):
    fd = os.open(path + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        json.dump(doc, f, sort_keys=True)
    os.rename(path + '.tmp', path)


def attach(state_dir, settings, uuid, writable):
    """Start the server for VDI ``uuid``; return the attachment record."""
    import subprocess
    existing = fuse.load_record(state_dir, uuid)
    if existing and fuse.backing_of(existing.get('loop') or '') is not None:
        return existing
    for tool in ('nbdfuse', 'nbdkit'):
        if not fuse.which(tool):
            raise SRError('VDIUnavailable', 'the s3 datapath needs %s (install nbdkit, '
                          'nbdkit-plugin-python, libnbd-bin and fuse3)' % tool)
    mount = os.path.join(state_dir, 'nbd', uuid)
    if not os.path.isdir(mount):
        os.makedirs(mount)
    conf = os.path.join(state_dir, 'nbd.%s.json' % uuid)
    pidfile = os.path.join(state_dir, 'nbd.%s.pid' % uuid)
    try:
        os.unlink(pidfile)
    except OSError:
        pass
    doc = dict(settings)
    doc.update(uuid=uuid, writable=bool(writable), pidfile=pidfile)
    _write_private(conf, doc)
    args = [fuse.which('nbdfuse')]
    if not writable:
        args.append('--readonly')
    args += [os.path.join(mount, 'disk'), '--command', fuse.which('nbdkit'), '-s', 'python', PLUGIN, 'config=' + conf]
    log = open(os.path.join(state_dir, 'nbd.%s.log' % uuid), 'ab')
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            close_fds=True, start_new_session=True)
    log.close()
    record = {'kind': 'fuse', 'mount': mount, 'pid': proc.pid, 'loop': '', 'vdi': uuid,
              'pidfile': pidfile, 'writable': bool(writable)}
    fuse.save_record(state_dir, uuid, record)
    path = os.path.join(mount, 'disk')
    deadline = time.time() + START_TIMEOUT
    while not (fuse.mounted(mount) and os.path.exists(path)):
        if proc.poll() is not None or time.time() > deadline:
            detach(state_dir, uuid)
            raise SRError('VDIUnavailable', 'nbdfuse/nbdkit for %s did not come up; see %s'
                          % (uuid, log.name))
        time.sleep(0.02)
    loop_args = ['losetup', '--find', '--show', '--direct-io=on']
    if not writable:
        loop_args.append('--read-only')
    try:
        record['loop'] = fuse.run(loop_args + [path])
    except SRError:
        detach(state_dir, uuid)
        raise
    fuse.save_record(state_dir, uuid, record)
    return record


def _server_pid(record):
    try:
        with open(record['pidfile']) as f:
            return int(f.read().strip())
    except (IOError, OSError, ValueError, KeyError):
        return 0


def detach(state_dir, uuid):
    """Undo attach; True when the server finished cleanly (its final flush done)."""
    record = fuse.load_record(state_dir, uuid)
    if record is None:
        return True
    server = _server_pid(record)
    fuse.detach(record)   # loop, mount (killing nbdfuse if it hangs), nbdfuse exit
    clean = True
    if server:
        deadline = time.time() + FLUSH_TIMEOUT
        while fuse.alive(server) and time.time() < deadline:
            time.sleep(0.05)
        if fuse.alive(server) and fuse.cmdline_has(server, PLUGIN):
            clean = False
            os.kill(server, 9)
    for path in (record.get('pidfile'), os.path.join(state_dir, 'nbd.%s.json' % uuid)):
        try:
            os.unlink(path)
        except (OSError, TypeError):
            pass
    fuse.drop_record(state_dir, uuid)
    return clean


def device_of(record):
    return record.get('loop')
