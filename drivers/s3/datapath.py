"""An S3 VDI as a block device on this host: our NBD server plus a client.

The server (nbd_server.py, one process per attached VDI) listens on the unix socket
``<state_dir>/nbd.<vdi>.sock``; the client is chosen by device-config ``datapath``:

  nbd   the kernel's NBD client (nbd_device.py): ``/dev/nbdN``. What an XCP-ng host
        uses: its dom0 has the nbd module and nbd-client (xapi-core requires it).
  fuse  where the nbd module is missing (containers, this project's test rig):
        ``nbdfuse`` shows the export as a file in a FUSE mount and a loop device
        (O_DIRECT) makes it a block device.
  auto  nbd when the host can, else fuse.

The attachment is recorded in ``<state_dir>/dp.<vdi>.json`` before each thing it
starts exists (state ``starting``, then ``ready``), so that the next attach or
detach of the VDI, or sr_scan, can undo what a killed command left (see
``clean_leftovers``). Detach flushes the device, disconnects it, and waits for the
server's final flush to reach S3; it works after the server died (the data is then
that of the last flush).
"""

import json
import os
import shutil
import sys
import time

from framework import crash
from framework.errors import SRError
from framework.files import fusedev as fuse
from drivers.s3 import nbd_device

CHOICES = ('auto', 'nbd', 'fuse')
START_TIMEOUT = 120.0     # a cold python start on a loaded host, with margin (a TCG guest: seconds)
FLUSH_TIMEOUT = 600.0
SERVER = os.path.join(os.path.dirname(os.path.realpath(__file__)), 'nbd_server.py')
FUSE_PACKAGES = 'nbdfuse (libnbd-bin on Debian, libnbd on EL) and fuse3'


def choose(wanted):
    """The client for device-config ``datapath`` on this host; VDIUnavailable naming what
    to install when it cannot be had."""
    wanted = wanted or 'auto'
    if wanted == 'nbd' or (wanted == 'auto' and nbd_device.available()):
        problem = nbd_device.missing()
        if problem:
            raise SRError('VDIUnavailable', 'the s3 datapath nbd needs %s' % problem)
        return 'nbd'
    if fuse.which('nbdfuse') and _fuse_device():
        return 'fuse'
    if wanted == 'fuse':
        raise SRError('VDIUnavailable', 'the s3 datapath fuse needs %s (and /dev/fuse)'
                      % FUSE_PACKAGES)
    raise SRError('VDIUnavailable', 'no s3 datapath on this host: the kernel NBD client '
                  'needs %s and the nbd module; without them, install %s'
                  % (nbd_device.PACKAGE, FUSE_PACKAGES))


def _fuse_device():
    """/dev/fuse and the loop driver, their modules loaded if need be."""
    for module, node in (('fuse', '/dev/fuse'), ('loop', '/dev/loop-control')):
        if not os.path.exists(node):
            try:
                fuse.run(['modprobe', module], timeout=30)
            except SRError:
                pass
    return os.path.exists('/dev/fuse')


def check_tools(wanted):
    """sr_create: fail now, naming the package, if this host could not attach a VDI."""
    try:
        choose(wanted)
    except SRError as e:
        raise SRError('SRUnavailable', e.detail)


# --- files of one attachment ----------------------------------------------------------

def _socket(uuid):
    return 'nbd.%s.sock' % uuid      # relative to the state dir: sun_path has 108 bytes


def _files(state_dir, uuid):
    base = os.path.join(state_dir, _socket(uuid))
    return [os.path.join(state_dir, 'nbd.%s.json' % uuid), base, base + '.tmp', base + '.pid',
            base + '.exit']


def _write_private(path, doc):
    fd = os.open(path + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        json.dump(doc, f, sort_keys=True)
    os.rename(path + '.tmp', path)


def _server_alive(record):
    pid = record.get('pid') or 0
    return bool(pid) and fuse.alive(pid) and fuse.cmdline_has(pid, record.get('settings', ''))


def alive(record):
    """Whether the attachment still serves its VDI (a repeated attach returns it)."""
    if record.get('state') != 'ready' or not _server_alive(record):
        return False
    if record.get('kind') == 'nbd':
        return nbd_device.owned(record)
    return bool(record.get('loop')) and fuse.backing_of(record['loop']) == _disk(record)


def _disk(record):
    """The file nbdfuse shows the export as: what this attachment's loop device is on."""
    return os.path.join(record.get('mount') or '/nonexistent', 'disk')


def device_of(record):
    return record.get('device') if record.get('kind') == 'nbd' else record.get('loop')


# --- attach ---------------------------------------------------------------------------

def attach(state_dir, settings, uuid, writable, wanted, log):
    """Serve VDI ``uuid`` as a block device; return the attachment record."""
    existing = fuse.load_record(state_dir, uuid)
    if existing and alive(existing):
        return existing
    if existing:
        teardown(state_dir, uuid, existing, log, 'its server or device was gone')
    kind = choose(wanted)
    conf = _files(state_dir, uuid)[0]
    doc = dict(settings)
    doc.update(uuid=uuid, writable=bool(writable))
    _write_private(conf, doc)
    record = {'kind': kind, 'state': 'starting', 'vdi': uuid, 'writable': bool(writable),
              'settings': conf, 'socket': _socket(uuid), 'pid': 0, 'cache': settings['cache']}
    fuse.save_record(state_dir, uuid, record)
    try:
        _start_server(state_dir, uuid, record)
        crash.point('s3.attach.after-server')
        if kind == 'nbd':
            nbd_device.connect(state_dir, record['socket'], record,
                               lambda r: fuse.save_record(state_dir, uuid, r))
        else:
            _fuse_connect(state_dir, uuid, record, writable)
    except BaseException:
        teardown(state_dir, uuid, record, log, 'its attach failed')
        raise
    record['state'] = 'ready'
    fuse.save_record(state_dir, uuid, record)
    crash.point('s3.attach.after-connect')
    log.info('VDI %s attached %s through datapath %s: %s (server pid %d)'
             % (uuid, 'read-write' if writable else 'read-only', kind, device_of(record),
                record['pid']))
    return record


def _start_server(state_dir, uuid, record):
    import subprocess
    sock = os.path.join(state_dir, record['socket'])
    for path in _files(state_dir, uuid)[1:]:
        try:
            os.unlink(path)
        except OSError:
            pass
    log = open(os.path.join(state_dir, 'nbd.%s.log' % uuid), 'ab')
    proc = subprocess.Popen([sys.executable, SERVER, record['settings'], record['socket']],
                            cwd=state_dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            close_fds=True, start_new_session=True)
    log.close()
    record['pid'] = proc.pid
    fuse.save_record(state_dir, uuid, record)
    deadline = time.time() + START_TIMEOUT
    while not os.path.exists(sock):
        if proc.poll() is not None or time.time() > deadline:
            raise SRError('VDIUnavailable', 'the NBD server of %s did not come up: %s'
                          % (uuid, _tail(log.name)))
        time.sleep(0.02)


def _tail(path, limit=400):
    try:
        with open(path, 'rb') as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode('utf-8', 'replace').strip().replace('\n', ' | ')
    except (IOError, OSError):
        return 'see %s' % path


def _fuse_connect(state_dir, uuid, record, writable):
    import subprocess
    mount = os.path.join(state_dir, 'nbd', uuid)
    if not os.path.isdir(mount):
        os.makedirs(mount)
    args = [fuse.which('nbdfuse')]
    if not writable:
        args.append('--readonly')
    args += [os.path.join(mount, 'disk'), '--unix', record['socket']]
    record.update(mount=mount, loop='')
    fuse.save_record(state_dir, uuid, record)
    log = open(os.path.join(state_dir, 'nbdfuse.%s.log' % uuid), 'ab')
    proc = subprocess.Popen(args, cwd=state_dir, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=log, close_fds=True, start_new_session=True)
    log.close()
    record['fuse_pid'] = proc.pid
    fuse.save_record(state_dir, uuid, record)
    path = os.path.join(mount, 'disk')
    deadline = time.time() + START_TIMEOUT
    while not (fuse.mounted(mount) and os.path.exists(path)):
        if proc.poll() is not None or time.time() > deadline:
            raise SRError('VDIUnavailable', 'nbdfuse for %s did not come up: %s'
                          % (uuid, _tail(log.name)))
        time.sleep(0.02)
    loop_args = ['losetup', '--find', '--show', '--direct-io=on']
    if not writable:
        loop_args.append('--read-only')
    record['loop'] = fuse.run(loop_args + [path])


# --- detach ---------------------------------------------------------------------------

def detach(state_dir, uuid, log):
    """Undo attach; True when the server finished cleanly (its final flush done)."""
    record = fuse.load_record(state_dir, uuid)
    if record is None:
        return True
    return teardown(state_dir, uuid, record, log, point='s3.detach.after-disconnect')


def teardown(state_dir, uuid, record, log, why='', point=None):
    """Undo what ``record`` describes, whatever its state; True when the server's final
    flush reached S3 (or there was nothing to flush)."""
    clean = True
    if record.get('kind') == 'nbd':
        if record.get('writable') and nbd_device.owned(record) and _server_alive(record):
            clean = nbd_device.flush(record['device'])
        nbd_device.disconnect(record)
    else:
        # the loop devices on our file, found by their backing file, never by the number
        # the record names: a stale record's number may serve another VDI now (it once
        # detached a fresh attach's device, which read b'' at 6 MiB); a vdi_attach killed
        # inside losetup left one the record does not name
        for loop in _loops_on(_disk(record)):
            fuse.detach({'loop': loop})
        fuse.detach({'mount': record.get('mount'), 'pid': record.get('fuse_pid')})
    if point:
        crash.point(point)
    clean = _wait_server(state_dir, uuid, record) and clean
    for path in _files(state_dir, uuid):
        try:
            os.unlink(path)
        except OSError:
            pass
    if record.get('cache'):
        shutil.rmtree(record['cache'], ignore_errors=True)
    fuse.drop_record(state_dir, uuid)
    log.info('VDI %s detached from datapath %s%s%s' % (
        uuid, record.get('kind'), ' (%s)' % device_of(record) if device_of(record) else '',
        ': %s' % why if why else ''))
    return clean


def _loops_on(path):
    out = []
    for name in os.listdir('/sys/block'):
        if name.startswith('loop') and fuse.backing_of(name) == path:
            out.append('/dev/' + name)
    return out


def _wait_server(state_dir, uuid, record):
    """Let the server finish its final flush (bounded); kill it past that. True when its
    exit report says the flush reached S3."""
    pid = record.get('pid') or 0
    if _server_alive(record) and os.path.exists(os.path.join(state_dir, record['socket'])):
        os.kill(pid, 9)            # still waiting for its client: nothing to flush
    deadline = time.time() + FLUSH_TIMEOUT
    while _server_alive(record) and time.time() < deadline:
        time.sleep(0.05)
    if _server_alive(record):
        os.kill(pid, 9)
        return False
    if not pid or not record.get('writable'):
        return True
    try:
        with open(os.path.join(state_dir, record['socket'] + '.exit')) as f:
            return bool(json.load(f).get('flushed'))
    except (IOError, OSError, ValueError):
        return False               # killed: only the flushes it had finished count


# --- leftovers of killed commands -----------------------------------------------------

def clean_leftovers(state_dir, attached, log):
    """sr_scan: undo the attachments of this host that killed commands left behind: a
    record not ``ready``, or ``ready`` but never marked attached (vdi_attach killed before
    its reply: xapi will never detach it). Only VDIs no command holds (their VDI lock is
    free). An attachment xapi knows is left to its detach, even with its server dead: a
    VM may still hold the device, and freeing it could hand it to another VDI."""
    from framework.locks import Lock
    for uuid, record in sorted(fuse.records(state_dir).items()):
        if record.get('state') == 'ready' and attached(uuid):
            continue
        try:
            lock = Lock(uuid, 'vdi', timeout=0)
            lock.__enter__()
        except SRError:
            continue   # a command holds the VDI: not a leftover
        try:
            current = fuse.load_record(state_dir, uuid)
            if current is not None:
                teardown(state_dir, uuid, current, log, 'left by a killed vdi_attach')
        except Exception as e:   # noqa: BLE001 (the scan goes on; the next one retries)
            log.error('cleaning the datapath of VDI %s: %s' % (uuid, e))
        finally:
            lock.__exit__()
