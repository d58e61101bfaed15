"""Admin actions on a Gluster SR that xapi has no command for.

    python3 -m drivers.gluster.admin --server HOST:/VOLUME [--backupservers H:H] status SR_UUID
    python3 -m drivers.gluster.admin --server HOST:/VOLUME [--backupservers H:H] fence SR_UUID VDI_UUID

``status`` prints, per VDI of the SR, the lease (which host holds it read-write, since
when), as JSON. ``fence`` breaks the lease of a host that died while it held a VDI
read-write, so that another host may activate it. Gluster cannot cut one client off a
volume, so first make sure the holder is really dead (powered off, or its SR detached):
a half-dead host that still has the VDI's loop device could write again.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

from drivers.gluster import lease
from drivers.gluster import mount as gmount
from framework.errors import SRError


def _mounted_volume(config):
    point = tempfile.mkdtemp(prefix='srkit-gluster-admin-')
    gmount.mount(config, point)
    return point


def status(config, sr_uuid):
    point = _mounted_volume(config)
    try:
        root = os.path.join(point, sr_uuid)
        if not os.path.isdir(root):
            raise SRError('SRUnavailable', 'no SR %s on the volume' % sr_uuid)
        out = {}
        for name in sorted(os.listdir(root)):
            if name.endswith('.raw') and not name.startswith('.'):
                uuid = name[:-4]
                out[uuid] = {'lease': lease.read(root, uuid)}
        return out
    finally:
        gmount.unmount(point)
        shutil.rmtree(point, ignore_errors=True)


def fence(config, sr_uuid, vdi_uuid):
    point = _mounted_volume(config)
    try:
        root = os.path.join(point, sr_uuid)
        if not os.path.isdir(root):
            raise SRError('SRUnavailable', 'no SR %s on the volume' % sr_uuid)
        return lease.fence(root, vdi_uuid)
    finally:
        gmount.unmount(point)
        shutil.rmtree(point, ignore_errors=True)


def main(argv=None):
    p = argparse.ArgumentParser(prog='python3 -m drivers.gluster.admin')
    p.add_argument('--server', required=True, help='<host>:/<volume>, as the SR device-config')
    p.add_argument('--backupservers', default='')
    p.add_argument('--mount-timeout', default='30')
    sub = p.add_subparsers(dest='action')
    s = sub.add_parser('status')
    s.add_argument('sr_uuid')
    f = sub.add_parser('fence')
    f.add_argument('sr_uuid')
    f.add_argument('vdi_uuid')
    args = p.parse_args(argv)
    if not args.action:
        p.error('an action is required: status or fence')
    config = {'server': args.server, 'backupservers': args.backupservers,
              'mount_timeout': args.mount_timeout}
    try:
        if args.action == 'status':
            print(json.dumps(status(config, args.sr_uuid), indent=1, sort_keys=True))
        else:
            held = fence(config, args.sr_uuid, args.vdi_uuid)
            if held is None:
                print('VDI %s has no lease: nothing to fence' % args.vdi_uuid)
            else:
                print('fenced: lease of %s held by %s since %s removed'
                      % (args.vdi_uuid, held.get('host'), held.get('since')))
    except SRError as e:
        sys.stderr.write('error: %s\n' % e)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
