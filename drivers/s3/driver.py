"""SR type ``s3``: VDIs as content-addressed, zstd-compressed chunks in an S3 bucket.

Layout and rationale: docs/s3.md; object names: layout.py. A VDI is one manifest
object (chunk map + metadata): create, snapshot, clone, revert, resize and
set_meta are each one conditional PUT of a manifest, never a copy of data.
Deleting a VDI drops its manifest; gc.py frees the chunks nobody references.
"""

import os

from framework import crash
from framework.driver import Driver, Volume
from framework.errors import SRError, primitive_faults
from framework.options import Option
from drivers.s3 import connection, layout, manifest

PHYSICAL_SIZE = 2 ** 50   # S3 has no capacity to report: a nominal 1 PiB (docs/s3.md)


def _translate(driver, name, args, e, fault):
    """Anything the S3 client raises becomes the SR fault an admin can act on."""
    if isinstance(e, manifest.Conflict):
        return SRError('VDIInUse', 'manifest %s changed while being updated' % e)
    return connection.fault(e, '%s on s3 SR %s' % (name, driver.sr_uuid), fault)


_mapped = primitive_faults(_translate)


def _writes(fn):
    """A primitive that changes manifests: what an earlier survey read is stale now."""
    def primitive(self, *args, **kwargs):
        self._survey = None
        return fn(self, *args, **kwargs)
    primitive.__name__ = fn.__name__
    primitive.__doc__ = fn.__doc__
    return primitive


class S3Driver(Driver):
    name = 'S3'
    description = 'srkit S3 driver: VDIs as deduplicated, compressed chunks in an S3 bucket'
    options = (
        Option('endpoint', 'S3 endpoint URL, e.g. https://s3.example.net:9000', required=True),
        Option('bucket', 'bucket that holds the SR (must exist)', required=True),
        Option('access_key', 'S3 access key id (default: the AWS credential chain)'),
        Option('secret_key', 'S3 secret access key', secret=True),
        Option('region', 'signing region', default='us-east-1'),
        Option('prefix', 'key prefix inside the bucket (several SRs may share a bucket)',
               default=''),
        Option('chunk_size', 'bytes per chunk for a new SR (a power of two, 64 KiB-64 MiB)',
               default=connection.DEFAULT_CHUNK, kind=int),
        Option('compression', 'zstd level 1-22 for chunks, or none', default='3'),
        Option('cache_dir', 'local directory for the write-back chunk cache of attached VDIs',
               default='/var/lib/srkit/s3-cache'),
        Option('cache_size', 'bytes of clean chunks each attached VDI keeps on local disk '
               'under cache_dir (least recently used out first; 0: none; unflushed writes '
               'are not counted)', default=connection.DEFAULT_CACHE_SIZE, kind=int),
        Option('datapath', 'how an attached VDI becomes a block device: nbd (the kernel NBD '
               'client, /dev/nbdN), fuse (nbdfuse + a loop device, where the nbd module is '
               'missing) or auto (nbd when the host can)', default='auto',
               choices=('auto', 'nbd', 'fuse')),
        Option('ca_bundle', 'CA certificates file for https endpoints'),
        Option('verify_tls', 'verify the endpoint certificate', default='true',
               choices=('true', 'false')),
    )
    thin_provisioning = True
    max_vdi_size = 64 * 1024 ** 4
    size_granularity = 512

    def __init__(self, sr_uuid, config, context):
        Driver.__init__(self, sr_uuid, connection.validate(dict(config)), context)
        self.bucket = self.config['bucket']
        self.root = layout.sr_root(self.config['prefix'], sr_uuid or '')
        self._client = None
        self._marker = None
        self._survey = None     # sr_scan: gc.Survey shared by collection, list and stats

    @property
    def client(self):
        if self._client is None:
            self._client = connection.make_client(self.config)
        return self._client

    # --- the SR marker -----------------------------------------------------------------
    def _sr(self):
        """The SR marker document; SRUnavailable when the SR is not there."""
        if self._marker is None:
            import json
            try:
                body = self.client.get_object(Bucket=self.bucket,
                                              Key=layout.marker(self.root))['Body'].read()
            except Exception as e:
                if connection.is_missing(e):
                    raise SRError('SRUnavailable', 'no s3 SR at %s/%s'
                                  % (self.bucket, self.root))
                raise
            self._marker = json.loads(body.decode('utf-8'))
        return self._marker

    @_mapped('SRUnavailable')
    def sr_create(self, physical_size):
        import json
        import time
        from drivers.s3 import datapath
        datapath.check_tools(self.config['datapath'])   # this host can attach its VDIs
        self.client.head_bucket(Bucket=self.bucket)
        doc = {'format': manifest.FORMAT, 'uuid': self.sr_uuid,
               'chunk_size': self.config['chunk_size'],
               'created': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
        try:
            self.client.put_object(Bucket=self.bucket, Key=layout.marker(self.root),
                                   Body=json.dumps(doc, sort_keys=True).encode(),
                                   ContentType='application/json',
                                   Conditional={'If-None-Match': '*'})
        except Exception as e:
            if connection.is_precondition(e):
                raise SRError('SRExists', '%s/%s' % (self.bucket, self.root))
            raise

    @_mapped()
    def sr_delete(self):
        from drivers.s3 import gc
        self._sr()
        keys = [k for k, _, _, _ in gc.list_objects(self.client, self.bucket, self.root)]
        # the marker goes last: until then the SR is still there to retry the delete
        keys.sort(key=lambda k: k == layout.marker(self.root))
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            if layout.marker(self.root) in batch:
                crash.point('s3.sr_delete.before-marker')
            self.client.delete_objects(Bucket=self.bucket, Delete={
                'Objects': [{'Key': k} for k in batch], 'Quiet': True})

    @_mapped('SRUnavailable')
    def sr_attach(self):
        self._sr()

    @_mapped('SRUnavailable')
    def sr_stats(self):
        from drivers.s3 import gc
        self._sr()
        usage = gc.usage(self.client, self.bucket, self.root, self._survey)
        self.ctx.log.info('s3 SR %s: stored %d bytes for %d logical bytes in %d chunks'
                          % (self.sr_uuid, usage['stored'], usage['logical'], usage['chunks']))
        return max(PHYSICAL_SIZE, usage['stored']), usage['stored']

    @_mapped('SRUnavailable')
    def probe(self):
        import json
        prefix = self.config['prefix']
        found = []
        token = None
        while True:
            kwargs = {'Bucket': self.bucket, 'Prefix': prefix, 'Delimiter': '/'}
            if token:
                kwargs['ContinuationToken'] = token
            reply = self.client.list_objects_v2(**kwargs)
            for common in reply.get('CommonPrefixes') or ():
                try:
                    body = self.client.get_object(
                        Bucket=self.bucket, Key=common['Prefix'] + layout.SR_MARKER)['Body']
                    doc = json.loads(body.read().decode('utf-8'))
                except Exception as e:
                    if connection.is_missing(e) or isinstance(e, ValueError):
                        continue
                    raise
                found.append({'uuid': doc.get('uuid') or common['Prefix'][len(prefix):-1]})
            token = reply.get('NextContinuationToken')
            if not reply.get('IsTruncated') or not token:
                return found

    # --- volumes ----------------------------------------------------------------------
    @staticmethod
    def _volume(doc):
        return Volume(doc['uuid'], doc['size'], manifest.allocated(doc), doc.get('meta'),
                      read_only=doc.get('meta', {}).get('read_only') == 'true')

    def _load(self, uuid):
        doc, _ = manifest.load(self.client, self.bucket, layout.manifest(self.root, uuid))
        return doc

    def _need(self, uuid):
        doc = self._load(uuid)
        if doc is None:
            raise SRError('VDIMissing', 'no VDI %s in s3 SR %s' % (uuid, self.sr_uuid))
        return doc

    @_mapped('SRUnavailable')
    def list(self):
        from drivers.s3 import gc
        self._sr()
        if self._survey is not None:
            docs = self._survey.docs
        else:
            _, docs = gc.referenced(self.client, self.bucket, self.root)
        return dict((u, self._volume(d)) for u, d in docs.items())

    @_mapped('SRScan')
    def collect_garbage(self):
        """Chunks no manifest references, older than the grace period (gc.py says why
        that is safe against a writer on another host)."""
        from drivers.s3 import datapath, gc
        from framework.markers import attached_in
        datapath.clean_leftovers(self.ctx.state_dir, lambda u: attached_in(self.ctx.state_dir, u),
                                 self.ctx.log)
        self._sr()
        self._survey = gc.Survey(self.client, self.bucket, self.root)
        gc.collect(self.client, self.bucket, self.root, crash.grace(), self.ctx.log,
                   self._survey)

    @_mapped()
    def get(self, uuid):
        doc = self._load(uuid)
        return self._volume(doc) if doc is not None else None

    @_mapped('VDICreate')
    @_writes
    def create(self, uuid, size, meta):
        doc = manifest.new(uuid, size, self._sr()['chunk_size'], meta)
        crash.point('s3.create.before-manifest')
        self._put_new(doc)
        return self._volume(doc)

    def _put_new(self, doc):
        try:
            manifest.store(self.client, self.bucket, layout.manifest(self.root, doc['uuid']),
                           doc, create=True)
        except manifest.Conflict:
            raise SRError('VDIExists', doc['uuid'])

    @_mapped('VDIDelete')
    @_writes
    def destroy(self, uuid):
        from drivers.s3 import lease
        held, _ = lease.read(self.client, self.bucket, layout.lease(self.root, uuid))
        if held:
            raise SRError('VDIInUse', 'VDI %s is active on host %s' % (uuid, held.get('host')))
        crash.point('s3.destroy.before-delete')
        self.client.delete_object(Bucket=self.bucket, Key=layout.manifest(self.root, uuid))

    @_mapped()
    @_writes
    def set_meta(self, uuid, meta):
        from framework import meta as m

        def change(doc):
            # one conditional PUT; the point marks a rename being written. (Not for a
            # snapshot_time-only rewrite: the simulator's follow-up vdi_update after a
            # snapshot does that only when the clock's second changed in between.)
            old = dict(doc['meta'])
            old.pop(m.SNAPSHOT_TIME, None)
            new = dict(meta)
            new.pop(m.SNAPSHOT_TIME, None)
            if old != new:
                crash.point('s3.set_meta.before-put')
            doc['meta'] = dict(meta)
        if manifest.update(self.client, self.bucket, layout.manifest(self.root, uuid),
                           change) is None:
            raise SRError('VDIMissing', uuid)

    def _copy(self, uuid, new_uuid, meta, step):
        source = self._need(uuid)
        copy = manifest.new(new_uuid, source['size'], source['chunk_size'], meta)
        copy['chunks'] = dict(source['chunks'])
        crash.point('s3.%s.after-read' % step)
        self._put_new(copy)
        return self._volume(copy)

    @_mapped('VDISnapshot')
    @_writes
    def snapshot(self, uuid, new_uuid, meta):
        return self._copy(uuid, new_uuid, meta, 'snapshot')

    @_mapped('VDIClone')
    @_writes
    def clone(self, uuid, new_uuid, meta):
        return self._copy(uuid, new_uuid, meta, 'clone')

    @_mapped()
    @_writes
    def revert(self, uuid, snapshot_uuid):
        snap = self._need(snapshot_uuid)

        def change(doc):
            crash.point('s3.revert.after-read')
            doc.update(size=snap['size'], chunk_size=snap['chunk_size'],
                       chunks=dict(snap['chunks']))
        if manifest.update(self.client, self.bucket, layout.manifest(self.root, uuid),
                           change) is None:
            raise SRError('VDIMissing', uuid)

    @_mapped('VDIResize')
    @_writes
    def resize(self, uuid, size):
        def change(doc):
            crash.point('s3.resize.after-read')
            manifest.truncate(doc, max(size, doc['size']))
        doc = manifest.update(self.client, self.bucket, layout.manifest(self.root, uuid), change)
        if doc is None:
            raise SRError('VDIMissing', uuid)
        return doc['size']

    @_mapped()
    def extents(self, uuid):
        return manifest.extents(self._need(uuid))

    @_mapped()
    def changed_extents(self, uuid, base_uuid):
        return manifest.changed_extents(self._need(uuid), self._need(base_uuid))

    @_mapped()
    @_writes
    def data_destroy(self, uuid):
        from drivers.s3 import cbt
        cbt.data_destroy(self, uuid)

    # --- single writer ------------------------------------------------------------------

    @_mapped('VDIUnavailable')
    def activate(self, uuid, writable):
        from drivers.s3 import lease
        doc = self._need(uuid)
        if not writable or doc.get('meta', {}).get('read_only') == 'true':
            return
        lease.acquire(self.client, self.bucket, layout.lease(self.root, uuid), uuid,
                      self.ctx.host_id)

    @_mapped('VDIUnavailable')
    def deactivate(self, uuid):
        from drivers.s3 import lease
        lease.release(self.client, self.bucket, layout.lease(self.root, uuid), self.ctx.host_id,
                      self.ctx.log)

    # --- datapath ---------------------------------------------------------------------
    @_mapped('VDIUnavailable')
    def attach(self, uuid, writable):
        from drivers.s3 import datapath
        self._need(uuid)
        settings = connection.client_settings(self.config)
        settings.update(root=self.root, cache_size=self.config['cache_size'],
                        cache=os.path.join(self.config['cache_dir'], self.sr_uuid,
                                           self.ctx.host_id, uuid))
        return datapath.device_of(datapath.attach(self.ctx.state_dir, settings, uuid, writable,
                                                  self.config['datapath'], self.ctx.log))

    def device_alive(self, uuid, path):
        from drivers.s3 import datapath
        from framework.files import fusedev
        record = fusedev.load_record(self.ctx.state_dir, uuid)
        return bool(record) and datapath.device_of(record) == path and datapath.alive(record)

    @_mapped('VDIUnavailable')
    def detach(self, uuid):
        from drivers.s3 import datapath
        if not datapath.detach(self.ctx.state_dir, uuid, self.ctx.log):
            self.ctx.log.error('s3 detach %s: the NBD server did not finish its final flush; '
                               'data since the last flush is lost' % uuid)
