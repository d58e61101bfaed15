"""device-config checks, the boto3 client, and S3 errors as SR faults.

boto3 is imported here and only when an S3 call is about to be made. Every
network wait is bounded (connect/read timeouts, few retries), so an unreachable
endpoint or a wrong key is a fault 47 within seconds, never a hang.
"""

import os

from framework.errors import SRError
from framework.options import config_error

CONNECT_TIMEOUT = 5
READ_TIMEOUT = 30
ATTEMPTS = 2
MIN_CHUNK = 64 * 1024
MAX_CHUNK = 64 * 1024 * 1024
DEFAULT_CHUNK = 4 * 1024 * 1024
DEFAULT_CACHE_SIZE = 256 * 1024 * 1024   # clean chunks on local disk, per attached VDI


def validate(config):
    """Normalise the S3 device-config in place; 115 naming every bad key."""
    invalid = []
    endpoint = config.get('endpoint') or ''
    scheme, _, rest = endpoint.partition('://')
    if scheme not in ('http', 'https') or not rest or rest.startswith('/'):
        invalid.append('endpoint=%s (expected http[s]://host[:port])' % endpoint)
    bucket = config.get('bucket') or ''
    if not (3 <= len(bucket) <= 63) or not set(bucket) <= set('abcdefghijklmnopqrstuvwxyz'
                                                            '0123456789.-'):
        invalid.append('bucket=%s (3-63 characters of a-z 0-9 . -)' % bucket)
    prefix = config.get('prefix') or ''
    if prefix.startswith('/') or '//' in prefix or '..' in prefix.split('/'):
        invalid.append('prefix=%s (a relative key prefix)' % prefix)
    elif prefix and not prefix.endswith('/'):
        prefix += '/'
    config['prefix'] = prefix
    size = config.get('chunk_size')
    if size is not None and (size < MIN_CHUNK or size > MAX_CHUNK or size & (size - 1)):
        invalid.append('chunk_size=%s (a power of two from %d to %d)'
                       % (size, MIN_CHUNK, MAX_CHUNK))
    cache_size = config.get('cache_size')
    if cache_size is not None and cache_size < 0:
        invalid.append('cache_size=%s (bytes, 0 or more)' % cache_size)
    compression = str(config.get('compression') or '3').lower()
    if compression not in ('none', '0'):
        if not compression.isdigit() or not 1 <= int(compression) <= 22:
            invalid.append('compression=%s (a zstd level 1-22, or none)' % compression)
    config['compression'] = compression
    verify = str(config.get('verify_tls') or 'true').lower()
    if verify not in ('true', 'false'):
        invalid.append('verify_tls=%s (true or false)' % verify)
    config['verify_tls'] = verify
    if config.get('ca_bundle') and not os.path.isfile(config['ca_bundle']):
        invalid.append('ca_bundle=%s (no such file)' % config['ca_bundle'])
    if bool(config.get('access_key')) != bool(config.get('secret_key')):
        invalid.append('access_key/secret_key (give both or neither)')
    config_error((), invalid)
    return config


def client_settings(config):
    """The JSON-safe subset a helper process (the nbdkit plugin) needs to connect."""
    keys = ('endpoint', 'bucket', 'access_key', 'secret_key', 'region', 'ca_bundle',
            'verify_tls', 'compression')
    return dict((k, config.get(k)) for k in keys)


def make_client(config):
    import boto3
    from botocore.config import Config
    verify = config.get('ca_bundle') or (config.get('verify_tls') != 'false')
    client = boto3.session.Session().client(
        's3', endpoint_url=config['endpoint'], region_name=config.get('region') or 'us-east-1',
        aws_access_key_id=config.get('access_key') or None,
        aws_secret_access_key=config.get('secret_key') or None, verify=verify,
        config=Config(connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT,
                      retries={'max_attempts': ATTEMPTS}, max_pool_connections=16,
                      s3={'addressing_style': 'path'}))
    _enable_conditional_headers(client)
    return client


def _enable_conditional_headers(client):
    """Let put/delete carry If-None-Match / If-Match even where the installed
    botocore predates those parameters: pass them as ``Conditional={...}``.

    An ETag goes out without its quotes: radosgw 16 compares If-Match on PUT with
    the bare stored ETag (a quoted one never matches, 412), and SeaweedFS and AWS
    accept both forms (docs/s3.md, "Where the servers differ")."""
    import threading
    local = threading.local()

    def stash(params, **kwargs):
        local.headers = params.pop('Conditional', None)

    def inject(request, **kwargs):
        headers = getattr(local, 'headers', None)
        if headers:
            for name, value in headers.items():
                request.headers[name] = bare_etag(value)
            local.headers = None

    for op in ('PutObject', 'DeleteObject'):
        client.meta.events.register('before-parameter-build.s3.%s' % op, stash)
        client.meta.events.register('before-sign.s3.%s' % op, inject)


def bare_etag(etag):
    """An ETag as radosgw compares it: no quotes ('*' stays '*')."""
    etag = str(etag)
    if len(etag) >= 2 and etag[0] == etag[-1] == '"':
        return etag[1:-1]
    return etag


def error_code(e):
    response = getattr(e, 'response', None) or {}
    code = str(response.get('Error', {}).get('Code', ''))
    status = response.get('ResponseMetadata', {}).get('HTTPStatusCode')
    return code, status


def is_missing(e):
    code, status = error_code(e)
    return code in ('NoSuchKey', '404', 'NotFound') or status == 404


def get_or_none(client, bucket, key):
    """The GetObject reply of ``key``, or None when there is no such object."""
    try:
        return client.get_object(Bucket=bucket, Key=key)
    except Exception as e:
        if is_missing(e):
            return None
        raise


def is_precondition(e):
    code, status = error_code(e)
    return code in ('PreconditionFailed', '412', 'ConditionalRequestConflict') \
        or status in (409, 412)


def fault(e, doing, name='SMGeneral'):
    """An SRError for an exception escaping boto3/botocore while ``doing``."""
    if isinstance(e, SRError):
        return e
    code, status = error_code(e)
    kind = type(e).__name__
    if code in ('InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', '403',
                'NoSuchBucket') or status in (401, 403) or kind in (
                    'EndpointConnectionError', 'ConnectTimeoutError', 'ReadTimeoutError',
                    'ConnectionClosedError', 'NoCredentialsError', 'SSLError',
                    'ProxyConnectionError'):
        return SRError('SRUnavailable', '%s: %s %s' % (doing, kind, code or e))
    return SRError(name, '%s: %s' % (doing, e))
