"""Admin actions on an RBD SR that xapi has no command for.

    python3 -m drivers.ceph.admin [connection options] status SR_UUID [VDI_UUID]
    python3 -m drivers.ceph.admin [connection options] fence  SR_UUID VDI_UUID [--expire S]

Connection options mirror the SR's device-config: --monitors, --user, --key-file
(a file holding the key), --keyring, --conf, --pool, --namespace.

``fence`` is for a host that died while it held a VDI read-write: it blocklists
the datapath clients the lease recorded (so a half-dead host can never write
again), breaks their RBD exclusive lock, and removes the lease so that another
host may activate the VDI. Only run it when the holder is known to be dead or
powered off: a blocklisted host needs its datapath restarted (detach/attach).
"""

import sys

from framework.errors import SRError
from drivers.ceph import layout as L


def _open(config, sr_uuid):
    from drivers.ceph.connection import Cluster, validate_config
    validate_config(config)
    cluster = Cluster(config, {'rbd_blocklist_on_break_lock': 'true'})
    io = cluster.ioctx(config.get('pool') or 'rbd', L.namespace_of(sr_uuid, config))
    return cluster, io


def lease(config, sr_uuid, vdi_uuid):
    import json
    import rados
    cluster, io = _open(config, sr_uuid)
    try:
        return json.loads(io.read(L.LEASE_PREFIX + vdi_uuid, 65536).decode() or '{}')
    except rados.ObjectNotFound:
        return None
    finally:
        cluster.close()


def status(config, sr_uuid, vdi_uuid=None):
    """{vdi uuid: {'lease': …, 'watchers': […], 'lock_owners': […]}}."""
    import json
    import rados
    import rbd
    cluster, io = _open(config, sr_uuid)
    out = {}
    try:
        names = [vdi_uuid] if vdi_uuid else [n for n in rbd.RBD().list(io) if L.is_vdi_name(n)]
        for name in names:
            try:
                held = json.loads(io.read(L.LEASE_PREFIX + name, 65536).decode() or '{}')
            except rados.ObjectNotFound:
                held = None
            with rbd.Image(io, name, read_only=True) as img:
                out[name] = {'lease': held, 'watchers': list(img.watchers_list()),
                             'lock_owners': list(img.lock_get_owners())}
    finally:
        cluster.close()
    return out


def fence(config, sr_uuid, vdi_uuid, expire=3600, log=None):
    """Fence the holder of VDI ``vdi_uuid``'s write lease; return what was done."""
    import json
    import rados
    import rbd
    cluster, io = _open(config, sr_uuid)
    done = {'blocklisted': [], 'locks_broken': [], 'lease': None}
    try:
        try:
            held = json.loads(io.read(L.LEASE_PREFIX + vdi_uuid, 65536).decode() or '{}')
        except rados.ObjectNotFound:
            held = None
        done['lease'] = held
        addrs = [c['addr'] for c in (held or {}).get('clients', ())]
        for addr in addrs:
            cluster.rados.blocklist_add(addr, expire)
            done['blocklisted'].append(addr)
        ids = set('client.%d' % c['id'] for c in (held or {}).get('clients', ()))
        with rbd.Image(io, vdi_uuid) as img:
            for owner in img.lock_get_owners():
                # break the fenced client's exclusive lock now instead of at its timeout
                if not ids or owner['owner'].split()[0] in ids:
                    img.lock_break(owner['mode'], owner['owner'])
                    done['locks_broken'].append(owner['owner'])
        if held is not None:
            io.remove_object(L.LEASE_PREFIX + vdi_uuid)
    finally:
        cluster.close()
    return done


def _config(args):
    config = {}
    it = iter(args)
    rest = []
    for arg in it:
        if arg in ('--monitors', '--user', '--keyring', '--conf', '--pool', '--namespace'):
            config[arg[2:]] = next(it)
        elif arg == '--key-file':
            with open(next(it)) as f:
                config['key'] = f.read().strip()
        elif arg == '--expire':
            config['_expire'] = int(next(it))
        else:
            rest.append(arg)
    return config, rest


def main(argv=None):
    import json
    config, rest = _config(sys.argv[1:] if argv is None else argv)
    if len(rest) < 2 or rest[0] not in ('status', 'fence'):
        sys.stderr.write(__doc__)
        return 2
    try:
        if rest[0] == 'status':
            result = status(config, rest[1], rest[2] if len(rest) > 2 else None)
        else:
            if len(rest) < 3:
                sys.stderr.write('fence needs SR_UUID VDI_UUID\n')
                return 2
            result = fence(config, rest[1], rest[2], config.pop('_expire', 3600))
    except SRError as e:
        sys.stderr.write('%s\n' % e)
        return 1
    print(json.dumps(result, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == '__main__':
    sys.exit(main())
