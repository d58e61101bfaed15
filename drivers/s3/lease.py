"""The single-writer lease of an active VDI: one object per VDI, ``lease/<uuid>``.

Taken with a conditional PUT (If-None-Match: *), which the server refuses (412)
when the object exists, so of two hosts activating at once exactly one wins.
Fallback for servers that ignore the header: the holder is read back after the
PUT and only the host whose token is there holds it (a narrow window remains
where both PUT before either reads; docs/s3.md).

Fencing a dead holder is an admin action: make sure the host is off, then delete
the lease object (docs/s3.md, "Fencing a dead host"). S3 cannot cut a live host
off; a writer's manifest PUT is conditional on the ETag it read (nbd_plugin.py),
so a fenced writer's next flush fails instead of overwriting the new holder's data.
"""

import json
import os
import time

from framework.errors import SRError
from drivers.s3 import connection


def read(client, bucket, key):
    """(lease dict, etag) or (None, None)."""
    reply = connection.get_or_none(client, bucket, key)
    if reply is None:
        return None, None
    try:
        return json.loads(reply['Body'].read().decode('utf-8')), reply.get('ETag')
    except ValueError:
        return {}, reply.get('ETag')


def _in_use(uuid, held):
    return SRError('VDIInUse', 'VDI %s is active read-write on host %s since %s; a VDI is '
                   'writable on one host at a time. If that host is dead, fence it '
                   '(docs/s3.md: "Fencing a dead host")'
                   % (uuid, held.get('host'), held.get('since')))


def acquire(client, bucket, key, uuid, host):
    held, _ = read(client, bucket, key)
    if held is not None:
        if held.get('host') == host:
            return held
        raise _in_use(uuid, held)
    mine = {'host': host, 'since': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()),
            'token': os.urandom(8).hex()}
    try:
        client.put_object(Bucket=bucket, Key=key, Body=json.dumps(mine, sort_keys=True).encode(),
                          ContentType='application/json', Conditional={'If-None-Match': '*'})
    except Exception as e:
        if not connection.is_precondition(e):
            raise
    held, _ = read(client, bucket, key)
    if not held or held.get('token') != mine['token']:
        if held and held.get('host') == host:
            return held
        raise _in_use(uuid, held or {})
    return mine


def release(client, bucket, key, host, log=None):
    held, etag = read(client, bucket, key)
    if held is None:
        return
    if held.get('host') != host:
        if log is not None:
            log.error('lease %s is held by %s, not this host; left alone' % (key, held.get('host')))
        return
    try:
        client.delete_object(Bucket=bucket, Key=key, Conditional={'If-Match': etag})
    except Exception as e:
        if not (connection.is_precondition(e) or connection.is_missing(e)):
            raise
