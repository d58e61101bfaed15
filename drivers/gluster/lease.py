"""Single writer across hosts: a lease file per VDI active read-write somewhere.

``.lease.<vdi>`` in the SR directory is created with O_CREAT|O_EXCL, which Gluster
resolves on the volume (one entry, one winner whichever client asks), and holds who
took it. Removing it is the holder's job at deactivate, or the admin's when the
holder died (``python3 -m drivers.gluster.admin fence``, docs/gluster.md). A POSIX
lock would not do: it dies with the short-lived driver process that took it.
"""

import errno
import os
import time

from framework.errors import SRError

PREFIX = '.lease.'
FENCED = '.fenced.'
# how long a FUSE client may serve a removed file from its caches: the kernel's entry
# and attribute timeouts and Gluster's md-cache/quick-read are 1 s by default
CACHE_LIFETIME = 1.5


def path(root, uuid):
    return os.path.join(root, PREFIX + uuid)


def read(root, uuid):
    """The lease record, {} when unreadable, None when there is no lease."""
    import json
    try:
        with open(path(root, uuid)) as f:
            return json.load(f)
    except (IOError, OSError) as e:
        if e.errno == errno.ENOENT:
            return None
        raise
    except ValueError:
        return {}


def take(root, uuid, host):
    """Take the lease for ``host``; VDIInUse (24) when another host holds it."""
    import json
    record = {'host': host, 'since': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
              'pid': os.getpid()}
    recheck = True
    for attempt in range(5):
        try:
            fd = os.open(path(root, uuid), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            break
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
        held = read(root, uuid)
        if held is None:   # the open just dropped a stale cache entry: ask the volume again
            time.sleep(0.2 * attempt)
            continue
        if held.get('host') == host:
            return held   # this host holds it already (idempotent re-activation)
        if recheck:
            # a lease another client removed (a release, a fence) can still be served
            # from this client's caches for their lifetime: look once more after it
            recheck = False
            time.sleep(CACHE_LIFETIME)
            continue
        raise SRError('VDIInUse', 'VDI %s is active read-write on host %s since %s; a VDI '
                      'is writable on one host at a time. If that host is dead, fence it '
                      '(docs/gluster.md: "Fencing a dead host")'
                      % (uuid, held.get('host') or '?', held.get('since') or '?'))
    else:
        raise SRError('VDIInUse', 'the lease of VDI %s keeps appearing and vanishing; '
                      'another host is taking and releasing it' % uuid)
    try:
        os.write(fd, json.dumps(record, sort_keys=True).encode('utf-8'))
        os.fsync(fd)
    finally:
        os.close(fd)
    return record


def release(root, uuid, host, log):
    held = read(root, uuid)
    if held is None:
        return
    if held and held.get('host') != host:
        log.error('deactivate %s: lease held by %s, not this host; left alone'
                  % (uuid, held.get('host')))
        return
    try:
        os.unlink(path(root, uuid))
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise


def check(root, uuid, what):
    held = read(root, uuid)
    if held is not None:
        # a lease its holder just released on another host can still be served from
        # this client's caches for their lifetime (as in ``take``): look once more
        time.sleep(CACHE_LIFETIME)
        held = read(root, uuid)
    if held is not None:
        raise SRError('VDIInUse', 'cannot %s VDI %s: it is active read-write on host %s '
                      'since %s' % (what, uuid, (held or {}).get('host') or '?',
                                    (held or {}).get('since') or '?'))


def fence(root, uuid):
    """Break the lease of a dead holder; returns what it held (None: there was none)."""
    held = read(root, uuid)
    if held is None:
        return None
    os.rename(path(root, uuid), os.path.join(root, '%s%s.%d' % (FENCED, uuid, int(time.time()))))
    return held
