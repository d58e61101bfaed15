"""The loop-device datapath of file-backed VDIs: attach, detach, grow online."""

import os

from framework.errors import SRError


def losetup(*args):
    import subprocess
    proc = subprocess.Popen(('losetup',) + args, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise SRError('VDIUnavailable', 'losetup %s: %s' % (' '.join(args), err.strip()))
    return out.strip()


def devices(path):
    """Loop devices backed by ``path`` on this host."""
    if not os.path.exists(path):
        return []
    out = losetup('--associated', path, '--noheadings', '--output', 'NAME')
    return [line.strip() for line in out.splitlines() if line.strip()]


def attach(path, writable, direct=False):
    """A loop device on ``path``; ``direct``: O_DIRECT to the file, so the host's page
    cache never holds a copy of the VDI (on a shared filesystem another host may write)."""
    existing = devices(path)
    if existing:
        return existing[0]
    args = ['--find', '--show']
    if not writable:
        args.append('--read-only')
    if direct:
        args.append('--direct-io=on')
    return losetup(*(args + [path]))


def detach(path):
    for device in devices(path):
        losetup('--detach', device)


def refresh_capacity(path):
    """Let attached devices see a file that grew (online resize)."""
    for device in devices(path):
        losetup('--set-capacity', device)
