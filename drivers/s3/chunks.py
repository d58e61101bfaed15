"""Chunks: fixed-size pieces of a VDI, named by the SHA-256 of their plain bytes.

A chunk object holds the bytes zstd-compressed (user metadata ``srkit-codec: zstd``)
or as they are (``none``, also used when compression does not pay). An all-zero
chunk is never stored: it is a hole in the manifest.

Uploads always PUT, even when the chunk may exist already: the server keeps one
object per hash (dedup), and the PUT refreshes its LastModified, which is what
keeps the garbage collector's grace period away from a chunk a writer is about
to reference (see gc.py).
"""

import hashlib

CODEC_KEY = 'srkit-codec'


def digest(data):
    return hashlib.sha256(data).hexdigest()


def is_zero(data):
    return not data.strip(b'\0')


def encode(data, compression):
    """(body, codec) for a chunk's plain bytes."""
    if compression not in ('none', '0'):
        import zstandard
        body = zstandard.ZstdCompressor(level=int(compression)).compress(data)
        if len(body) < len(data):
            return body, 'zstd'
    return bytes(data), 'none'


def decode(body, codec, expected=None):
    if codec == 'zstd':
        import zstandard
        data = zstandard.ZstdDecompressor().decompress(body)
    else:
        data = body
    if expected is not None and digest(data) != expected:
        raise IOError('chunk %s: content does not match its hash' % expected)
    return data


def upload(client, bucket, key, data, compression):
    """Store one chunk; return the bytes sent."""
    body, codec = encode(data, compression)
    client.put_object(Bucket=bucket, Key=key, Body=body, Metadata={CODEC_KEY: codec})
    return len(body)


def download(client, bucket, key, expected):
    reply = client.get_object(Bucket=bucket, Key=key)
    body = reply['Body'].read()
    return decode(body, (reply.get('Metadata') or {}).get(CODEC_KEY, 'none'), expected)
