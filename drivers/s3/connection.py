"""device-config checks, the S3 client, and S3 errors as SR faults.

Every network wait is bounded (connect/read timeouts, two attempts), so an
unreachable endpoint or a wrong key is a fault 47 within seconds, never a hang.
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
    """Our S3 client (s3client.py) for a validated device-config. Without keys, the
    environment's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, else anonymous requests."""
    from drivers.s3 import s3client
    access, secret = config.get('access_key'), config.get('secret_key')
    if not access:
        access = os.environ.get('AWS_ACCESS_KEY_ID')
        secret = os.environ.get('AWS_SECRET_ACCESS_KEY')
    return s3client.Client(
        config['endpoint'], region=config.get('region') or 'us-east-1',
        access_key=access or None, secret_key=secret or None,
        verify=config.get('ca_bundle') or (config.get('verify_tls') != 'false'),
        connect_timeout=CONNECT_TIMEOUT, read_timeout=READ_TIMEOUT, attempts=ATTEMPTS)


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
    """An SRError for an exception escaping the S3 client while ``doing``."""
    from drivers.s3 import s3client
    if isinstance(e, SRError):
        return e
    code, status = error_code(e)
    kind = type(e).__name__
    if isinstance(e, s3client.Unreachable) or code in (
            'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'AccessDenied', '403',
            'NoSuchBucket') or status in (401, 403):
        return SRError('SRUnavailable', '%s: %s %s' % (doing, kind, code or e))
    return SRError(name, '%s: %s' % (doing, e))
