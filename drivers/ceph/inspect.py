"""Reading the images the SR index does not know, in a helper process.

Issue 16, finding 2: a fresh-pool sr_scan rebuilding a lost index died of a signal
(SIGABRT there, SIGSEGV on the rig: about one such scan in 25 while another pool
kept creating, cloning and deleting images of the SR, under load). The driver's
log places it in the index repair, between two images it was reading, i.e. inside
librbd, opening and reading images (head, snapshots, their children) that another
client is creating or removing at that moment. The driver gives librbd no way to
crash by misuse there: every handle is closed by ``with`` before the next
opens, no callback, watch or AIO is left behind, and the process ends with
``os._exit`` without ever shutting the client down under a live handle. A crash in
the library itself cannot be caught in the process it kills, so that phase runs
in a child: one process reads all the unknown images (one connection, one JSON
reply on stdout). A child killed by a signal is run again (the race is rare);
after three, the scan fails with an ordinary fault: it never returns a partial
list, which would make xapi forget VDIs whose image was simply not read.

Only the repair path pays the child (~0.1-0.2 s: spawn, import, connect): a scan
of an SR whose index is complete never starts one.
"""

import json
import os
import sys

from framework.errors import SRError

TRIES = 3
TIMEOUT = 300   # seconds for the child to read every unknown image

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CHILD = ('import sys; sys.path.insert(0, %r); '
          'from drivers.ceph.inspect import main; main()' % _ROOT)


def read_images(ctx, names):
    """{name: what Scan.read_image returns} for ``names``, read by a child (``ctx``:
    the SRContext of the SR: its uuid, device-config and log)."""
    import subprocess
    from drivers.ceph import layout as L
    request = json.dumps({'sr_uuid': ctx.sr_uuid, 'config': ctx.config,
                          'names': sorted(names)})
    why = ''
    for attempt in range(TRIES):
        proc = subprocess.Popen([sys.executable, '-c', _CHILD], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, close_fds=True,
                                env=dict(os.environ))
        try:
            out, _ = proc.communicate(request.encode('utf-8'), timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise SRError('SRScan', 'reading %d image(s) the index does not know took over '
                          '%d s' % (len(names), TIMEOUT))
        if proc.returncode == 0:
            try:
                reply = json.loads(out.decode('utf-8'))
            except ValueError:
                reply = None
            if isinstance(reply, dict) and 'error' in reply:
                raise SRError(reply['error'][0], reply['error'][1])
            if isinstance(reply, dict) and 'images' in reply:
                return dict((name, _decode(found, L)) for name, found in reply['images'].items())
            why = 'an unreadable reply'
        else:
            why = ('killed by signal %d' % -proc.returncode if proc.returncode < 0
                   else 'exit status %d' % proc.returncode)
        ctx.log.error('reading the images the index does not know: the helper '
                      'process ended with %s (attempt %d of %d)'
                      % (why, attempt + 1, TRIES))
    raise SRError('SRScan', 'reading %d image(s) the index does not know failed %d times '
                  '(%s); nothing was changed, scan again' % (len(names), TRIES, why))


def _decode(found, L):
    if not isinstance(found, dict):
        return found    # 'broken' or None
    restored = [L.Entry.load(e['uuid'], e['entry']) for e in found['restored']]
    for entry, e in zip(restored, found['restored']):
        entry.image, entry.snap, entry.size = e['image'], e['snap'], e['size']
    return restored, found['needed'], found['age']


def main():
    """The child: read a request on stdin, reply on stdout, exit 0 unless killed."""
    from framework import crash
    from framework.driver import Context
    reply_fd = os.dup(1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    try:
        request = json.loads(sys.stdin.read())
        from drivers.ceph.driver import RBDDriver

        class _Log(object):
            def info(self, msg):
                pass
            error = info
        driver = RBDDriver(request['sr_uuid'], request['config'], Context('', _Log(), False))
        images = {}
        for name in request['names']:
            crash.point('rbd.inspect.image')
            found = driver.scanner.read_image(name)
            if isinstance(found, tuple):
                restored, needed, age = found
                found = {'needed': needed, 'age': age,
                         'restored': [{'uuid': e.uuid, 'entry': e.dump(), 'image': e.image,
                                       'snap': e.snap, 'size': e.size} for e in restored]}
            images[name] = found
        reply = {'images': images}
    except SRError as e:
        reply = {'error': [e.name, e.detail]}
    except Exception as e:  # noqa: BLE001 - reported to the parent as a fault
        reply = {'error': ['SRScan', 'reading images: %s: %s' % (type(e).__name__, e)]}
    data = json.dumps(reply).encode('utf-8')
    while data:
        data = data[os.write(reply_fd, data):]
    os._exit(0)
