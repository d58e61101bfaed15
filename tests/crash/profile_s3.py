"""Crash-matrix profile of the `s3` driver: SRs under a fresh prefix of the rig's bucket.

Reads follow docs/s3.md with plain boto3 + zstandard (never the driver's code):
manifest -> chunk objects -> bytes."""
import json
import os

TYPE = 's3'
EXECUTABLE = 'S3SR'
MiB = 1024 * 1024


def unavailable():
    if not os.environ.get('SRKIT_S3_ENDPOINT'):
        return 'no S3 server (tests/rigs/s3.sh up DIR; eval "$(tests/rigs/s3.sh env DIR)")'
    try:
        import boto3  # noqa: F401
        import zstandard  # noqa: F401
    except ImportError:
        return 'boto3/zstandard not importable by the test python'
    return ''


def device_config(workdir):
    return {'endpoint': os.environ['SRKIT_S3_ENDPOINT'],
            'bucket': os.environ['SRKIT_S3_BUCKET'],
            'access_key': os.environ['SRKIT_S3_ACCESS_KEY'],
            'secret_key': os.environ['SRKIT_S3_SECRET_KEY'],
            'prefix': 'crash-%s/' % os.urandom(4).hex(),
            'cache_dir': os.path.join(workdir, 's3-cache'),
            'chunk_size': str(MiB)}


def _client(dc):
    import boto3
    from botocore.config import Config
    return boto3.client('s3', endpoint_url=dc['endpoint'], aws_access_key_id=dc['access_key'],
                        aws_secret_access_key=dc['secret_key'], region_name='us-east-1',
                        config=Config(s3={'addressing_style': 'path'}))


def _keys(client, bucket, prefix):
    out, token = {}, None
    while True:
        kw = {'Bucket': bucket, 'Prefix': prefix}
        if token:
            kw['ContinuationToken'] = token
        r = client.list_objects_v2(**kw)
        out.update((o['Key'], o['Size']) for o in r.get('Contents') or ())
        token = r.get('NextContinuationToken')
        if not r.get('IsTruncated'):
            return out


def _manifest(client, bucket, key):
    return json.loads(client.get_object(Bucket=bucket, Key=key)['Body'].read())


def objects(dc, sr_uuid):
    """A manifest is its VDI (virtual size); chunks some manifest references belong to
    those VDIs; anything else (an unreferenced chunk, a lease) is listed as itself."""
    client, bucket = _client(dc), dc['bucket']
    root = '%s%s/' % (dc['prefix'], sr_uuid)
    keys = _keys(client, bucket, root)
    found, referenced = {}, set()
    for key in keys:
        if key.startswith(root + 'vdi/') and key.endswith('.json'):
            doc = _manifest(client, bucket, key)
            found[key[len(root + 'vdi/'):-5]] = doc['size']
            referenced.update(root + 'chunks/' + h for h in doc['chunks'].values())
    for key, size in keys.items():
        if key == root + 'sr.json' or key.startswith(root + 'vdi/') or key in referenced:
            continue
        found[key[len(root):]] = size
    return found


def read(dc, sr_uuid, location, offset, length):
    import zstandard
    client, bucket = _client(dc), dc['bucket']
    root = '%s%s/' % (dc['prefix'], sr_uuid)
    doc = _manifest(client, bucket, root + 'vdi/%s.json' % location)
    cs = doc['chunk_size']
    out = bytearray()
    pos = offset
    end = min(offset + length, doc['size'])
    while pos < end:
        index, within = divmod(pos, cs)
        n = min(cs - within, end - pos)
        digest = doc['chunks'].get(str(index))
        if digest is None:
            out += bytes(n)
        else:
            reply = client.get_object(Bucket=bucket, Key=root + 'chunks/' + digest)
            body = reply['Body'].read()
            if reply.get('Metadata', {}).get('srkit-codec') == 'zstd':
                body = zstandard.ZstdDecompressor().decompress(body)
            out += body[within:within + n]
        pos += n
    return bytes(out)


def cleanup(dc, sr_uuid):
    client, bucket = _client(dc), dc['bucket']
    keys = list(_keys(client, bucket, dc['prefix']))
    for i in range(0, len(keys), 1000):
        client.delete_objects(Bucket=bucket, Delete={
            'Objects': [{'Key': k} for k in keys[i:i + 1000]], 'Quiet': True})
