"""Crash-matrix profile of the `local` driver: files in a temporary directory."""
import os

TYPE = 'local'
EXECUTABLE = 'LocalSR'
SUFFIXES = ('.raw', '.json')


def unavailable():
    return ''  # needs nothing but a directory (and loop devices, like every local test)


def device_config(workdir):
    location = os.path.join(workdir, 'storage')
    os.makedirs(location)
    return {'location': location}


def _sr_dir(device_config, sr_uuid):
    return os.path.join(device_config['location'], sr_uuid)


def objects(device_config, sr_uuid):
    """Every file of the SR directory: a VDI's two files count as its uuid (sized by
    its .raw); anything else (scratch a killed command left) under its own name."""
    found = {}
    root = _sr_dir(device_config, sr_uuid)
    for name in os.listdir(root):
        if name == '.srkit-sr':
            continue
        base, dot, ext = name.partition('.')
        if '.' + ext in SUFFIXES and os.path.exists(os.path.join(root, base + '.raw')) \
                and os.path.exists(os.path.join(root, base + '.json')):
            found[base] = os.path.getsize(os.path.join(root, base + '.raw'))
        else:
            found[name] = os.path.getsize(os.path.join(root, name))
    return found


def read(device_config, sr_uuid, location, offset, length):
    with open(os.path.join(_sr_dir(device_config, sr_uuid), location + '.raw'), 'rb') as f:
        return os.pread(f.fileno(), length, offset)
