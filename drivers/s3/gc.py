"""Garbage collection of chunks no manifest references, and the SR's byte counts.

Safe against a writer on another host that is uploading right now:
- a writer PUTs every chunk of a flush (even one that exists: the PUT refreshes its
  LastModified) before it writes the manifest that references them, and re-checks
  them after (nbd_plugin.py), so a chunk younger than the grace period may belong to a
  manifest not written yet: the collector never deletes it;
- a manifest can otherwise only gain chunks by copying another manifest (snapshot,
  clone, revert): the collector reads manifests until two listings agree, so a copy
  made while it reads is seen;
- each candidate is HEADed again right before its DELETE, so a chunk re-uploaded since
  the listing is kept.
Times are the server's (LastModified and the Date header), never this host's clock.

Admin use: ``python3 -m drivers.s3.gc CONFIG.json SR_UUID [--grace S] [--stats]``.
"""

import time

from drivers.s3 import connection, layout, manifest

DEFAULT_GRACE = 3600   # admin CLI default; sr_scan uses framework.crash.grace()


def _server_now(client, bucket):
    import calendar
    import email.utils
    reply = client.head_bucket(Bucket=bucket)
    date = reply.get('ResponseMetadata', {}).get('HTTPHeaders', {}).get('date')
    parsed = email.utils.parsedate(date) if date else None
    return calendar.timegm(parsed) if parsed else time.time()


def _epoch(dt):
    import calendar
    return calendar.timegm(dt.utctimetuple())


def list_objects(client, bucket, prefix):
    """Every object under ``prefix``: [(key, size, last_modified_epoch, etag)]."""
    out = []
    token = None
    while True:
        kwargs = {'Bucket': bucket, 'Prefix': prefix, 'MaxKeys': 1000}
        if token:
            kwargs['ContinuationToken'] = token
        reply = client.list_objects_v2(**kwargs)
        for item in reply.get('Contents') or ():
            out.append((item['Key'], item['Size'], _epoch(item['LastModified']),
                        item.get('ETag')))
        token = reply.get('NextContinuationToken')
        if not reply.get('IsTruncated') or not token:
            return out


def referenced(client, bucket, root, objects=None):
    """(set of chunk hashes any manifest references, {uuid: manifest}), read until two
    listings of the manifests agree; ``objects``, a listing of root just made, serves
    as the first of them."""
    read = {}      # key -> etag of the copy read
    docs = {}
    refs = set()
    previous = None
    prefix = layout.manifests(root)
    for _ in range(20):
        if objects is not None:
            listing = dict((k, e) for k, _, _, e in objects if k.startswith(prefix))
            objects = None
        else:
            listing = dict((k, e) for k, _, _, e in list_objects(client, bucket, prefix))
        for key, etag in listing.items():
            if read.get(key) == etag:
                continue
            doc, _ = manifest.load(client, bucket, key)
            read[key] = etag
            if doc is not None:
                refs.update(doc['chunks'].values())
                docs[doc['uuid']] = doc
        if listing == previous:
            docs = dict((u, d) for u, d in docs.items()
                        if layout.manifest(root, u) in listing)
            return refs, docs
        previous = listing
    raise RuntimeError('manifests of %s kept changing; collection skipped' % root)


class Survey(object):
    """One reading of everything under an SR's root: its objects, then its manifests.
    sr_scan's collection, listing and byte counts share it; each used to list the whole
    SR and read every manifest again."""

    def __init__(self, client, bucket, root):
        # objects first: a chunk listed here and uploaded for a manifest not yet read
        # is young, and the grace period keeps it
        self.objects = list_objects(client, bucket, root)
        self.refs, self.docs = referenced(client, bucket, root, self.objects)

    def deleted(self, keys):
        keys = set(keys)
        self.objects = [o for o in self.objects if o[0] not in keys]


def collect(client, bucket, root, grace=DEFAULT_GRACE, log=None, survey=None):
    """Delete the chunks of ``root`` that no manifest references and that are older
    than ``grace`` seconds; return counts."""
    now = _server_now(client, bucket)
    cutoff = now - grace
    survey = survey or Survey(client, bucket, root)
    chunks = [o for o in survey.objects if o[0].startswith(layout.chunks(root))]
    refs = survey.refs
    gone = []
    stats = {'chunks': len(chunks), 'referenced': 0, 'young': 0, 'deleted': 0,
             'freed_bytes': 0}
    for key, size, modified, _ in chunks:
        digest = layout.digest_of_chunk(root, key)
        if digest in refs:
            stats['referenced'] += 1
            continue
        if modified > cutoff:
            stats['young'] += 1
            continue
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except Exception as e:
            if connection.is_missing(e):
                continue
            raise
        if _epoch(head['LastModified']) > cutoff:
            stats['young'] += 1
            continue
        client.delete_object(Bucket=bucket, Key=key)
        gone.append(key)
        stats['deleted'] += 1
        stats['freed_bytes'] += size
    survey.deleted(gone)
    if log is not None:
        log.info('s3 gc %s: %r' % (root, stats))
    return stats


def usage(client, bucket, root, survey=None):
    """{'stored': bytes of objects under root (after dedup and compression),
    'logical': bytes of data the VDIs hold (sum of their allocated chunks),
    'chunks': number of chunk objects}."""
    survey = survey or Survey(client, bucket, root)
    objects, docs = survey.objects, survey.docs
    return {'stored': sum(size for _, size, _, _ in objects),
            'logical': sum(manifest.allocated(d) for d in docs.values()),
            'chunks': sum(1 for k, _, _, _ in objects if k.startswith(layout.chunks(root))),
            'vdis': len(docs)}


def main(argv):
    import json
    import sys
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    with open(argv[0]) as f:
        config = connection.validate(json.load(f))
    client = connection.make_client(config)
    root = layout.sr_root(config['prefix'], argv[1])
    if '--stats' in argv:
        print(json.dumps(usage(client, config['bucket'], root), sort_keys=True))
        return 0
    grace = DEFAULT_GRACE
    if '--grace' in argv:
        grace = int(argv[argv.index('--grace') + 1])
    print(json.dumps(collect(client, config['bucket'], root, grace), sort_keys=True))
    return 0


if __name__ == '__main__':
    import sys
    sys.exit(main(sys.argv[1:]))
