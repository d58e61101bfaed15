"""Crash-matrix profile of the `gluster` driver: the rig's replica volume, read on a brick.

The backend's own view is a brick of the volume (tests/rigs/gluster.sh): the files
Gluster stored there and their ``user.srkit.meta`` xattr, not the driver's mount.
"""
import os
import subprocess
import tempfile

TYPE = 'gluster'
EXECUTABLE = 'GlusterSR'
XATTR = 'user.srkit.meta'
OURS = ('.srkit-sr', '.lease.', '.fenced.')


def unavailable():
    if not os.environ.get('SRKIT_GLUSTER_DIR'):
        return 'no glusterd: run tests/rigs/gluster.sh up DIR and eval its env'
    return ''


def device_config(workdir):
    return {'server': '%s:/%s' % (os.environ['SRKIT_GLUSTER_HOST'],
                                  os.environ['SRKIT_GLUSTER_VOLUME']),
            'mount_timeout': '20'}


def _brick_dir(sr_uuid):
    return os.path.join(os.environ['SRKIT_GLUSTER_BRICKS'].split(':')[0], sr_uuid)


def objects(device_config, sr_uuid):
    """Every file of the SR directory on the brick: a ``.raw`` carrying its record counts
    as its uuid (sized by the file); anything else under its own name."""
    found = {}
    root = _brick_dir(sr_uuid)
    for name in os.listdir(root):
        if name.startswith(OURS):
            continue
        path = os.path.join(root, name)
        if name.endswith('.raw') and XATTR in os.listxattr(path):
            found[name[:-4]] = os.path.getsize(path)
        else:
            found[name] = os.path.getsize(path)
    return found


def read(device_config, sr_uuid, location, offset, length):
    with open(os.path.join(_brick_dir(sr_uuid), location + '.raw'), 'rb') as f:
        return os.pread(f.fileno(), length, offset)


def cleanup(device_config, sr_uuid):
    """Remove what is left of the SR through a mount of our own (never on the brick)."""
    import shutil
    point = tempfile.mkdtemp(prefix='srkit-crash-gluster-')
    try:
        subprocess.run(['mount', '-t', 'glusterfs', device_config['server'], point],
                       capture_output=True, timeout=60)
        if os.path.ismount(point):
            shutil.rmtree(os.path.join(point, sr_uuid), ignore_errors=True)
    finally:
        subprocess.run(['umount', point], capture_output=True)
        os.rmdir(point)
