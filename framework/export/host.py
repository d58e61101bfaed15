"""``srkit vdi-export`` / ``srkit vdi-import`` on a host: the same pipeline, with the
SR and VDI found through the local xapi (as xe finds them), run in this process.

    srkit vdi-export uuid=<vdi> filename=<file>|- \\
        [format=raw|vhd|qcow2] [compression=zstd[:level]|none] [base=<snapshot uuid>]
    srkit vdi-import uuid=<vdi> filename=<file>|- [format=]
    srkit vdi-import sr-uuid=<sr> filename=<file>|- [name-label=]

``--status FILE`` keeps a JSON progress record there (the xapi plugin's
``progress`` reads it). The session is a local root login on xapi's UNIX socket
(SRKIT_XAPI_SOCKET overrides the path, as for the drivers); ``--session REF`` uses
a session the caller made instead (and leaves it open): its ``this_host`` says
which host this is (the simulator's ``srkit xe vdi-export`` runs this module so,
as the SR's master host). Exit status 0 on success, 1 with "Error: …" on stderr
otherwise.
"""

import json
import os
import sys

from framework.errors import SRError

USAGE = __doc__.split('\n\n')[1]


OPTIONS = ('--status', '--session')


def parse(argv):
    """xe-style key=value arguments, and the ``--status FILE`` / ``--session REF``
    options (a dict keyed by the option's name without dashes)."""
    args, options = {}, {}
    rest = list(argv)
    while rest:
        item = rest.pop(0)
        if item in OPTIONS and rest:
            options[item[2:]] = rest.pop(0)
            continue
        key, eq, value = item.partition('=')
        if not eq:
            raise SRError('BadRequest', 'expected key=value, got %r' % item)
        args[key] = value
    return args, options


class Host(object):
    """What this host's xapi says about SRs and VDIs."""

    def __init__(self, session=None):
        from framework.xapi import local_api
        self.api = local_api(session)
        self.own = not session
        self.ref = session or self.api.session.login_with_password('root', '', '1.0', 'srkit')
        self.host = self.api.session.get_this_host(self.ref)

    def close(self):
        if not self.own:
            return
        try:
            self.api.session.logout()
        except Exception:
            pass

    def vdi(self, uuid):
        """(ref, record) of VDI ``uuid``, in one call."""
        from framework.request_fields import check_uuid
        found = self.api.VDI.get_all_records_where('field "uuid" = "%s"'
                                                   % check_uuid(uuid, 'VDI uuid'))
        if not found:
            raise SRError('VDIMissing', 'no VDI with uuid %s' % uuid)
        return list(found.items())[0]

    def job(self, sr_ref, **fields):
        """The transfer job for SR ``sr_ref`` as this host's PBD sees it."""
        sr = self.api.SR.get_record(sr_ref)
        pbds = self.api.PBD.get_all_records_where('field "SR" = "%s" and field "host" = "%s"'
                                                  % (sr_ref, self.host))
        if not pbds:
            raise SRError('SRUnavailable', 'SR %s has no PBD on this host' % sr['uuid'])
        pbd = list(pbds.values())[0]
        if not pbd.get('currently_attached'):
            raise SRError('SRUnavailable', 'SR %s is not plugged on this host' % sr['uuid'])
        from framework.options import device_config_of_call, sr_master_host
        pool_master = list(self.api.pool.get_all_records().values())[0]['master']
        dc = device_config_of_call(pbd['device_config'], self.host == sr_master_host(
            sr['shared'], pool_master, pbd['host']))
        job = {'sr_type': sr['type'], 'sr_uuid': sr['uuid'], 'sr_ref': sr_ref,
               'device_config': dc, 'host_ref': self.host, 'session_ref': self.ref}
        job.update(fields)
        return job

    def create_vdi(self, sr_ref, size, label):
        ref = self.api.VDI.create({
            'SR': sr_ref, 'virtual_size': str(size), 'name_label': label,
            'name_description': 'imported by srkit', 'type': 'user', 'sharable': False,
            'read_only': False, 'other_config': {}, 'xenstore_data': {}, 'sm_config': {},
            'tags': []})
        rec = self.api.VDI.get_record(ref)    # one round trip for both fields
        return ref, rec['uuid'], rec['location']


def run(command, args, log, status=None, session=None):
    from framework.export import transfer
    host = Host(session)
    created = []
    try:
        filename = args.get('filename')
        if not filename:
            raise SRError('BadRequest', 'filename= is required ("-" for %s)'
                          % ('stdout' if command == 'vdi-export' else 'stdin'))
        if filename != '-':
            filename = os.path.abspath(filename)
        if command == 'vdi-export':
            _, vdi = host.vdi(args['uuid'])
            fields = {'op': 'export', 'vdi_uuid': vdi['uuid'], 'vdi_location': vdi['location'],
                      'format': args.get('format', 'raw'),
                      'compression': args.get('compression', 'zstd'), 'filename': filename}
            if args.get('base'):
                _, base = host.vdi(args['base'])
                if base['SR'] != vdi['SR']:
                    raise SRError('BadRequest', 'base %s is not in the SR of %s'
                                  % (args['base'], args['uuid']))
                fields.update(base_uuid=base['uuid'], base_location=base['location'])
            return transfer.run(host.job(vdi['SR'], **fields), log, status=status)
        if command != 'vdi-import':
            raise SRError('BadRequest', 'unknown command %r\n%s' % (command, USAGE))
        if args.get('uuid'):
            _, vdi = host.vdi(args['uuid'])
            return transfer.run(host.job(vdi['SR'], op='import', vdi_uuid=vdi['uuid'],
                                         vdi_location=vdi['location'], filename=filename,
                                         format=args.get('format', '')), log, status=status)
        sr_ref = host.api.SR.get_by_uuid(args['sr-uuid'])

        def creator(size):
            ref, uuid, location = host.create_vdi(sr_ref, size,
                                                  args.get('name-label', 'imported'))
            created.append(ref)
            return uuid, location
        return transfer.run(host.job(sr_ref, op='import', filename=filename, create=True,
                                     format=args.get('format', '')), log, creator,
                            status=status)
    except BaseException:
        for ref in created:   # an import that created its VDI removes it on failure
            try:
                host.api.VDI.destroy(ref)
            except Exception as e:
                log.error('could not remove VDI %s after a failed import: %s' % (ref, e))
        raise
    finally:
        host.close()


def main(argv=None):
    from framework.log import Log
    from framework.export.transfer import report_failure
    argv = sys.argv[1:] if argv is None else argv
    if not argv or set(argv[:2]) & {'-h', '--help', 'help'}:
        sys.stdout.write(USAGE + '\n')
        return 0 if argv else 2
    # Our own messages (errors, progress) go to the stderr we were given, through a
    # descriptor of our own: a driver may point fd 2 elsewhere while it works (rbd
    # keeps what librados prints there, to scrub it of secrets).
    sys.stderr = os.fdopen(os.dup(2), 'w', 1)
    log = Log()
    status = None
    try:
        args, options = parse(argv[1:])
        status = options.get('status')
        result = run(argv[0], args, log, status, options.get('session'))
    except Exception as e:
        return report_failure(log, argv[0], e, status)
    if status:
        from framework.export.progress import write_status
        record = {}
        try:
            with open(status) as f:
                record = json.load(f)
        except (IOError, OSError, ValueError):
            pass
        record.update(result, state='done')
        write_status(status, record)
    if result.get('uuid'):
        sys.stdout.write(result['uuid'] + '\n')
    return 0


def vdi_export(argv):
    """``srkit vdi-export …`` (simulator/cli.py's dispatcher, as the host's srkit)."""
    return main(['vdi-export'] + list(argv))


def vdi_import(argv):
    return main(['vdi-import'] + list(argv))


if __name__ == '__main__':
    sys.exit(main())
