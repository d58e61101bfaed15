"""The per-VDI manifest object: chunk map, size and the framework's metadata, in
one JSON document, so one PUT (atomic on every S3 server) changes a VDI.

    {"format": 1, "uuid": "<vdi uuid>", "size": <bytes>, "chunk_size": <bytes>,
     "chunks": {"<index>": "<sha256>", ...},      holes have no entry
     "meta": {...framework metadata...}}
    a data-destroyed snapshot (CBT) has "chunks": {} and its map in "cbt_hashes"

Changes are read-modify-write guarded by If-Match on the ETag read; on servers
that ignore If-Match the last writer wins (docs/s3.md).
"""

from drivers.s3 import connection

FORMAT = 1
RETRIES = 8


class Conflict(Exception):
    """The manifest changed under a writer that may not overwrite it."""


def new(uuid, size, chunk_size, meta):
    return {'format': FORMAT, 'uuid': uuid, 'size': int(size), 'chunk_size': int(chunk_size),
            'chunks': {}, 'meta': dict(meta)}


def encode(doc):
    import json
    return json.dumps(doc, sort_keys=True, separators=(',', ':')).encode('utf-8')


def decode(body):
    import json
    doc = json.loads(body.decode('utf-8'))
    if not isinstance(doc, dict) or doc.get('format') != FORMAT:
        raise ValueError('not an srkit manifest')
    doc['chunks'] = dict((str(k), str(v)) for k, v in (doc.get('chunks') or {}).items())
    return doc


def load(client, bucket, key):
    """(doc, etag), or (None, None) when there is no such manifest."""
    reply = connection.get_or_none(client, bucket, key)
    if reply is None:
        return None, None
    return decode(reply['Body'].read()), reply.get('ETag')


def store(client, bucket, key, doc, etag=None, create=False):
    """PUT the manifest; only over ``etag`` if given, only if absent if ``create``.
    Returns the new ETag; a failed precondition raises Conflict."""
    conditional = {}
    if etag:
        conditional['If-Match'] = etag
    if create:
        conditional['If-None-Match'] = '*'
    try:
        reply = client.put_object(Bucket=bucket, Key=key, Body=encode(doc),
                                  ContentType='application/json', Conditional=conditional)
    except Exception as e:
        if conditional and connection.is_precondition(e):
            raise Conflict(key)
        raise
    return reply.get('ETag')


def update(client, bucket, key, change):
    """Apply ``change(doc)`` (which edits doc in place) and store; retried on a race.
    Returns the stored doc, or None if the manifest does not exist."""
    for _ in range(RETRIES):
        doc, etag = load(client, bucket, key)
        if doc is None:
            return None
        change(doc)
        try:
            store(client, bucket, key, doc, etag)
            return doc
        except Conflict:
            continue
    raise Conflict(key)


# --- what a manifest says about the data --------------------------------------------------

def extents(doc):
    """[(offset, length)] of the chunks that hold data, adjacent ones merged."""
    return _runs(sorted(int(i) for i in doc['chunks']), doc)


def changed_extents(doc, base):
    """[(offset, length)] of the chunks that differ from ``base`` (a snapshot, maybe
    data-destroyed: its hashes are kept for this)."""
    mine, theirs = hashes(doc), hashes(base)
    if doc['chunk_size'] != base['chunk_size']:
        # no chunk-by-chunk comparison: everything may differ, holes included
        return [(0, doc['size'])] if doc['size'] else []
    changed = set(i for i in set(mine) | set(theirs) if mine.get(i) != theirs.get(i))
    return _runs(sorted(int(i) for i in changed), doc)


def _runs(indexes, doc):
    size, cs = doc['size'], doc['chunk_size']
    out = []
    for i in indexes:
        start = i * cs
        if start >= size:
            continue
        length = min(cs, size - start)
        if out and out[-1][0] + out[-1][1] == start:
            out[-1] = (out[-1][0], out[-1][1] + length)
        else:
            out.append((start, length))
    return out


def hashes(doc):
    """{index: sha256} of what the VDI holds, also once its data was destroyed."""
    return doc['cbt_hashes'] if 'cbt_hashes' in doc else doc['chunks']


def drop_data(doc):
    """vdi_data_destroy: the chunk map moves to ``cbt_hashes``, which the collector
    does not read (gc.referenced reads ``chunks``): the chunks no other manifest
    shares are freed, the hashes still tell what changed since. Idempotent."""
    if 'cbt_hashes' not in doc:
        doc['cbt_hashes'] = doc['chunks']
    doc['chunks'] = {}


def allocated(doc):
    return sum(length for _, length in extents(doc))


def truncate(doc, size):
    """Set the size; chunks wholly past the end are dropped (the tail of a partial last
    chunk past ``size`` is never read)."""
    doc['size'] = int(size)
    last = (int(size) + doc['chunk_size'] - 1) // doc['chunk_size']
    doc['chunks'] = dict((k, v) for k, v in doc['chunks'].items() if int(k) < last)
