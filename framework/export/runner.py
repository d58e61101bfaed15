"""The process that runs one export or import: ``python3 -m framework.export JOB``.

JOB is a JSON object naming the SR (type, uuid, device_config as xapi's PBD has
it, optionally a session for secrets), the VDI (uuid, location) and the
transfer::

    {"op": "export", "format": "qcow2", "compression": "zstd:3",
     "filename": "-", "base_uuid": "", "base_location": "", ...}
    {"op": "import", "filename": "-", "format": "", "create": false, ...}

``filename`` "-" is stdout (export) or stdin (import). With ``"create": true``
(import into a new VDI) the VDI does not exist yet: once the stream's header
has said how big it must be, the runner asks its caller on the control socket
(fd ``control_fd``): it sends ``{"virtual_size": N}`` and reads back
``{"uuid": …, "location": …}`` (or ``{"error": …}``). The caller, who created it,
destroys it when the runner exits non-zero.

Exit status 0 on success; otherwise 1 with "Error: <fault name>: <detail>" on stderr.
"""

import json
import os
import sys

from framework.errors import SRError


def _invocation(job, log):
    from framework import registry, wire
    from framework import driver as contract
    from framework.commands import Invocation
    cls = registry.load(job['sr_type'])
    contract.check(cls)
    params = {'sr_uuid': job['sr_uuid'], 'vdi_uuid': job.get('vdi_uuid', ''),
              'vdi_location': job.get('vdi_location', ''),
              'device_config': job.get('device_config') or {},
              'session_ref': job.get('session_ref', ''), 'host_ref': job.get('host_ref', ''),
              'sr_ref': job.get('sr_ref', '')}
    return Invocation(wire.Request('vdi_' + job['op'], params), cls, log)


def _ask(control_fd, request):
    os.write(control_fd, (json.dumps(request) + '\n').encode())
    reply = b''
    while not reply.endswith(b'\n'):
        more = os.read(control_fd, 4096)
        if not more:
            raise SRError('SMGeneral', 'the caller closed the control socket')
        reply += more
    answer = json.loads(reply.decode())
    if answer.get('error'):
        raise SRError('SMGeneral', 'creating the VDI failed: %s' % answer['error'])
    return answer


def run(job, log, creator=None, status=None):
    """Run one job. ``creator(virtual_size) -> (uuid, location)`` makes a new VDI;
    ``status``: a file for the progress record."""
    from framework.export import instream, pipeline
    filename = job.get('filename') or '-'
    if job['op'] == 'export':
        fd = 1 if filename == '-' else os.open(filename, os.O_WRONLY | os.O_CREAT |
                                               os.O_TRUNC, 0o644)
        try:
            inv = _invocation(job, log)
            base = (job['base_uuid'], job.get('base_location') or job['base_uuid']) \
                if job.get('base_uuid') else None
            pipeline.export_vdi(inv, job['vdi_location'], fd, job.get('format') or 'raw',
                                job.get('compression') or 'zstd', base,
                                sidecar=None if filename == '-' else filename + '.srkit',
                                status=status)
        except BaseException:
            if fd != 1:  # no half-written export is left looking like a good one
                for path in (filename, filename + '.srkit'):
                    try:
                        os.unlink(path)
                    except OSError:
                        pass
            raise
        finally:
            if fd != 1:
                os.close(fd)
        return {}
    if job['op'] != 'import':
        raise SRError('BadRequest', 'unknown op %r' % job['op'])
    fd = 0 if filename == '-' else os.open(filename, os.O_RDONLY)
    try:
        src = instream.open_input(fd, None if filename == '-' else filename + '.srkit')
        reader = pipeline.open_reader(src, job.get('format') or None)
        result = {}
        if job.get('create'):
            size = reader.virtual_size
            if size is None and src.compression == 'none' and filename != '-':
                size = os.fstat(fd).st_size   # a bare raw file is as big as the disk
                reader.virtual_size = size
            if size is None:
                raise SRError('VDISize', 'a raw stream without srkit metadata does not say '
                              'how big the disk is: create the VDI and import with uuid=')
            if reader.is_delta or (src.header or {}).get('base'):
                raise SRError('BadRequest', 'this stream is a delta: import it with uuid= '
                              'of the VDI that holds its base')
            uuid, location = creator(size)
            job = dict(job, vdi_uuid=uuid, vdi_location=location)
            result = {'uuid': uuid}
        inv = _invocation(job, log)
        pipeline.import_vdi(inv, job['vdi_location'], src, reader, bool(job.get('create')),
                            status=status)
        return result
    finally:
        if fd != 0:
            os.close(fd)


def main(argv):
    from framework.log import Log
    # Our own messages (errors, progress) go to the stderr we were given, through a
    # descriptor of our own: a driver may point fd 2 elsewhere while it works (rbd
    # keeps what librados prints there, to scrub it of secrets).
    sys.stderr = os.fdopen(os.dup(2), 'w', 1)
    log = Log()
    if len(argv) != 1:
        sys.stderr.write('usage: python3 -m framework.export JOB_JSON\n')
        return 2
    job = json.loads(argv[0])
    control = job.get('control_fd')

    def creator(size):
        if control is None:
            raise SRError('BadRequest', 'no way to create a VDI from here')
        answer = _ask(int(control), {'virtual_size': size})
        return answer['uuid'], answer['location']
    try:
        result = run(job, log, creator)
    except Exception as e:
        return report_failure(log, job.get('op'), e)
    if control is not None:
        os.write(int(control), (json.dumps(dict(result, done=True)) + '\n').encode())
    return 0


def report_failure(log, what, error, status=None):
    """Log a failed transfer, say why on stderr (and in the status file); return 1."""
    from framework.log import describe_exception
    if isinstance(error, SRError):
        text = error.message
        log.error('%s failed: %s %s' % (what, error.code, text))
    else:
        text = '%s: %s' % (type(error).__name__, error)
        log.error('%s: EXCEPTION %s' % (what, describe_exception()))
    text = log.scrub(text)
    sys.stderr.write('Error: %s\n' % text)
    if status:
        from framework.export.progress import write_status
        try:
            write_status(status, {'state': 'failed', 'error': text})
        except (IOError, OSError):
            pass
    return 1
