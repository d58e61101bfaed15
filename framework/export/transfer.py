"""One transfer: the export or import of one VDI, described by a job
(``framework.export.host`` builds it from what xapi says about the SR and VDI)::

    {"sr_type", "sr_uuid", "sr_ref", "device_config" (the PBD's, with SRmaster),
     "host_ref", "session_ref", "vdi_uuid", "vdi_location", ...}
    {"op": "export", "format": "qcow2", "compression": "zstd:3",
     "filename": "-", "base_uuid": "", "base_location": ""}
    {"op": "import", "filename": "-", "format": "", "create": false}

``filename`` "-" is stdout (export) or stdin (import). With ``"create": true``
(import into a new VDI) the VDI does not exist yet: once the stream's header has
said how big it must be, ``run`` calls its ``creator``; the caller, who created
it, destroys it when ``run`` raises.
"""

import json
import os
import sys

from framework.errors import SRError


def _invocation(job, log):
    from framework import registry, wire
    from framework import driver as contract
    from framework.invocation import Invocation
    cls = registry.load(job['sr_type'])
    contract.check(cls)
    params = {'sr_uuid': job['sr_uuid'], 'vdi_uuid': job.get('vdi_uuid', ''),
              'vdi_location': job.get('vdi_location', ''),
              'device_config': job.get('device_config') or {},
              'session_ref': job.get('session_ref', ''), 'host_ref': job.get('host_ref', ''),
              'sr_ref': job.get('sr_ref', '')}
    return Invocation(wire.Request('vdi_' + job['op'], params), cls, log)


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
