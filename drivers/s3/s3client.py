"""The S3 calls the driver makes, over http.client with AWS Signature V4.

Why not boto3: importing boto3 and building its S3 client took 1.9 s of CPU of every
s3 process (2.1 s for a whole sr_scan; tens of seconds on a slow CPU), and dom0 would
have to carry it. The driver needs seven calls, path-style, with conditional headers.

The methods take boto3's keyword names and return the parts of boto3's reply dicts
the driver reads (``Body`` is read in full: objects are chunks and small documents),
so code and tests read the same either way. Errors are ``ClientError`` (the server
answered: ``e.response['Error']['Code']``, ``['ResponseMetadata']['HTTPStatusCode']``)
or an ``Unreachable`` subclass (no answer), named as botocore names them.

One connection per thread per client: the NBD server's workers share one client.
``requests`` counts the answers, for benchmarks.
"""

import datetime
import hashlib
import hmac
import io
import threading
import time

from urllib.parse import quote, urlsplit

EMPTY_SHA256 = hashlib.sha256(b'').hexdigest()
RETRY_STATUS = (500, 502, 503, 504)


class S3Error(Exception):
    pass


class ClientError(S3Error):
    """The server answered with an error status."""

    def __init__(self, operation, status, code, message, headers):
        self.response = {'Error': {'Code': code, 'Message': message},
                         'ResponseMetadata': {'HTTPStatusCode': status, 'HTTPHeaders': headers}}
        S3Error.__init__(self, 'An error occurred (%s) when calling the %s operation: %s'
                         % (code, operation, message or status))


class Unreachable(S3Error):
    """No answer from the endpoint; the subclass says how it failed."""


class EndpointConnectionError(Unreachable):
    pass


class ConnectTimeoutError(Unreachable):
    pass


class ReadTimeoutError(Unreachable):
    pass


class ConnectionClosedError(Unreachable):
    pass


class SSLError(Unreachable):
    pass


def bare_etag(etag):
    """An ETag as radosgw compares it on a conditional request: no quotes ('*' stays '*').
    radosgw 16 never matches a quoted one (412); SeaweedFS and AWS take both forms
    (docs/s3.md, "Where the servers differ")."""
    etag = str(etag)
    if len(etag) >= 2 and etag[0] == etag[-1] == '"':
        return etag[1:-1]
    return etag


def _hmac(key, text):
    return hmac.new(key, text.encode('utf-8'), hashlib.sha256).digest()


def _uri(text, safe):
    # SigV4 escapes everything but A-Z a-z 0-9 - _ . ~ (python 3.6's quote escapes '~')
    return quote(text, safe=safe + '~')


def _timestamp(text):
    """S3's two date forms, as aware UTC datetimes."""
    if text[:1].isdigit():   # 2026-12-07T23:31:06.000Z, in listings
        return datetime.datetime.strptime(text[:19], '%Y-%m-%dT%H:%M:%S').replace(
            tzinfo=datetime.timezone.utc)
    import email.utils
    return email.utils.parsedate_to_datetime(text)


def _xml(data):
    """The parsed reply with namespaces stripped from its tags, for findtext('Key')."""
    import xml.etree.ElementTree as ET
    root = ET.fromstring(data)
    for element in root.iter():
        element.tag = element.tag.rpartition('}')[2]
    return root


class Client(object):
    def __init__(self, endpoint, region='us-east-1', access_key=None, secret_key=None,
                 verify=True, connect_timeout=5, read_timeout=30, attempts=2):
        parts = urlsplit(endpoint)
        self.https = parts.scheme == 'https'
        self.host = parts.hostname
        self.port = parts.port or (443 if self.https else 80)
        self.netloc = parts.netloc.rpartition('@')[2]
        self.region = region or 'us-east-1'
        self.access_key = access_key
        self.secret_key = secret_key
        self.verify = verify            # True, False, or a CA bundle path
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.attempts = max(1, attempts)
        self._local = threading.local()
        self._count = threading.Lock()
        self.requests = 0   # answers received: for benches

    # --- the calls --------------------------------------------------------------------
    def get_object(self, Bucket, Key):
        status, headers, data = self._call('GetObject', 'GET', Bucket, Key)
        reply = self._object_head(status, headers)
        reply['Body'] = io.BytesIO(data)
        reply['ContentLength'] = len(data)
        return reply

    def head_object(self, Bucket, Key):
        status, headers, _ = self._call('HeadObject', 'HEAD', Bucket, Key)
        return self._object_head(status, headers)

    def put_object(self, Bucket, Key, Body, Metadata=None, ContentType=None, Conditional=None):
        headers = _conditional(Conditional)
        if ContentType:
            headers['content-type'] = ContentType
        for name, value in (Metadata or {}).items():
            headers['x-amz-meta-' + name.lower()] = value
        status, headers, _ = self._call('PutObject', 'PUT', Bucket, Key, headers=headers,
                                        body=bytes(Body))
        return {'ETag': headers.get('etag'), 'ResponseMetadata': _meta(status, headers)}

    def delete_object(self, Bucket, Key, Conditional=None):
        status, headers, _ = self._call('DeleteObject', 'DELETE', Bucket, Key,
                                        headers=_conditional(Conditional))
        return {'ResponseMetadata': _meta(status, headers)}

    def delete_objects(self, Bucket, Delete):
        import base64
        from framework.wire import xml_text
        body = ('<Delete>%s%s</Delete>' % (
            '<Quiet>true</Quiet>' if Delete.get('Quiet') else '',
            ''.join('<Object><Key>%s</Key></Object>' % xml_text(o['Key'])
                    for o in Delete['Objects']))).encode('utf-8')
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode('ascii')
        status, headers, data = self._call(
            'DeleteObjects', 'POST', Bucket, query={'delete': ''}, body=body,
            headers={'content-md5': md5, 'content-type': 'application/xml'})
        root = _xml(data) if data.strip() else None
        errors = [] if root is None else [
            {'Key': e.findtext('Key'), 'Code': e.findtext('Code'), 'Message': e.findtext('Message')}
            for e in root.findall('Error')]
        return {'Errors': errors, 'ResponseMetadata': _meta(status, headers)}

    def head_bucket(self, Bucket):
        status, headers, _ = self._call('HeadBucket', 'HEAD', Bucket)
        return {'ResponseMetadata': _meta(status, headers)}

    def list_objects_v2(self, Bucket, Prefix=None, Delimiter=None, MaxKeys=None,
                        ContinuationToken=None, StartAfter=None):
        query = {'list-type': '2'}
        for name, value in (('prefix', Prefix), ('delimiter', Delimiter),
                            ('max-keys', MaxKeys), ('continuation-token', ContinuationToken),
                            ('start-after', StartAfter)):
            if value is not None:
                query[name] = str(value)
        status, headers, data = self._call('ListObjectsV2', 'GET', Bucket, query=query)
        root = _xml(data)
        contents = [{'Key': c.findtext('Key'), 'Size': int(c.findtext('Size') or 0),
                     'LastModified': _timestamp(c.findtext('LastModified')),
                     'ETag': c.findtext('ETag')} for c in root.findall('Contents')]
        reply = {'IsTruncated': root.findtext('IsTruncated') == 'true',
                 'KeyCount': len(contents), 'ResponseMetadata': _meta(status, headers)}
        if contents:
            reply['Contents'] = contents
        prefixes = [{'Prefix': p.findtext('Prefix')} for p in root.findall('CommonPrefixes')]
        if prefixes:
            reply['CommonPrefixes'] = prefixes
        token = root.findtext('NextContinuationToken')
        if token:
            reply['NextContinuationToken'] = token
        return reply

    @staticmethod
    def _object_head(status, headers):
        reply = {'ETag': headers.get('etag'), 'ResponseMetadata': _meta(status, headers),
                 'Metadata': dict((name[len('x-amz-meta-'):], value)
                                  for name, value in headers.items()
                                  if name.startswith('x-amz-meta-'))}
        if 'content-length' in headers:
            reply['ContentLength'] = int(headers['content-length'])
        if 'last-modified' in headers:
            reply['LastModified'] = _timestamp(headers['last-modified'])
        return reply

    # --- one request ------------------------------------------------------------------
    def _call(self, operation, method, bucket, key=None, query=None, headers=None, body=b''):
        path = '/' + _uri(bucket, '')
        if key is not None:
            path += '/' + _uri(key, '/')
        query_string = '&'.join('%s=%s' % (_uri(k, ''), _uri(v, ''))
                                for k, v in sorted((query or {}).items()))
        target = path + ('?' + query_string if query_string else '')
        payload_hash = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
        attempt = 0
        while True:
            attempt += 1
            signed = self._sign(method, path, query_string, dict(headers or {}), payload_hash)
            conn, fresh = self._connection()
            try:
                conn.request(method, target, body=body if method in ('PUT', 'POST') else None,
                             headers=signed)
                response = conn.getresponse()
                data = response.read()
            except Exception as e:
                self._drop()
                failure = _unreachable(e, connected=True)
                # a kept-alive connection the server has since closed fails before any
                # answer; that costs no attempt
                if not fresh and isinstance(failure, ConnectionClosedError):
                    attempt -= 1
                    continue
                if attempt < self.attempts:
                    continue
                raise failure
            with self._count:
                self.requests += 1
            status = response.status
            reply_headers = dict((k.lower(), v) for k, v in response.getheaders())
            if response.will_close:
                self._drop()
            if status < 300:
                return status, reply_headers, data
            if status in RETRY_STATUS and attempt < self.attempts:
                time.sleep(0.2 * attempt)
                continue
            raise _client_error(operation, status, reply_headers, data)

    def _sign(self, method, path, query_string, headers, payload_hash):
        now = time.gmtime()
        amz_date = time.strftime('%Y%m%dT%H%M%SZ', now)
        headers['host'] = self.netloc
        headers['x-amz-date'] = amz_date
        headers['x-amz-content-sha256'] = payload_hash
        if not (self.access_key and self.secret_key):
            return headers
        day = amz_date[:8]
        names = sorted(headers)
        canonical = '\n'.join([method, path, query_string]
                              + ['%s:%s' % (n, ' '.join(str(headers[n]).split())) for n in names]
                              + ['', ';'.join(names), payload_hash])
        scope = '%s/%s/s3/aws4_request' % (day, self.region)
        to_sign = '\n'.join(['AWS4-HMAC-SHA256', amz_date, scope,
                             hashlib.sha256(canonical.encode('utf-8')).hexdigest()])
        key = _hmac(_hmac(_hmac(_hmac(('AWS4' + self.secret_key).encode('utf-8'), day),
                                self.region), 's3'), 'aws4_request')
        headers['authorization'] = (
            'AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s'
            % (self.access_key, scope, ';'.join(names),
               hmac.new(key, to_sign.encode('utf-8'), hashlib.sha256).hexdigest()))
        return headers

    # --- connections ------------------------------------------------------------------
    def _connection(self):
        """(this thread's connection, whether it was just opened)."""
        conn = getattr(self._local, 'conn', None)
        if conn is not None:
            return conn, False
        import http.client
        if self.https:
            conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.connect_timeout,
                                               context=self._tls())
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        try:
            conn.connect()
        except Exception as e:
            conn.close()
            raise _unreachable(e, connected=False)
        conn.sock.settimeout(self.read_timeout)
        self._local.conn = conn
        return conn, True

    def _tls(self):
        import ssl
        if self.verify is False:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            return context
        cafile = self.verify if isinstance(self.verify, str) else None
        return ssl.create_default_context(cafile=cafile)

    def _drop(self):
        conn = getattr(self._local, 'conn', None)
        self._local.conn = None
        if conn is not None:
            conn.close()

    def close(self):
        self._drop()


def _conditional(conditions):
    """If-Match / If-None-Match request headers, their ETags bare."""
    return dict((name.lower(), bare_etag(value)) for name, value in (conditions or {}).items())


def _meta(status, headers):
    return {'HTTPStatusCode': status, 'HTTPHeaders': headers}


def _client_error(operation, status, headers, data):
    code, message = str(status), ''
    if data.strip().startswith(b'<'):
        try:
            root = _xml(data)
            code = root.findtext('Code') or code
            message = root.findtext('Message') or ''
        except Exception:   # a proxy's HTML page: the status says enough
            pass
    return ClientError(operation, status, code, message, headers)


def _unreachable(e, connected):
    """The Unreachable subclass that says how ``e`` (from socket/ssl/http.client) failed."""
    if isinstance(e, Unreachable):
        return e
    import socket
    kind = type(e).__name__
    if 'SSL' in kind or 'Certificate' in kind:
        cls = SSLError
    elif isinstance(e, socket.timeout):
        cls = ReadTimeoutError if connected else ConnectTimeoutError
    elif not connected:
        cls = EndpointConnectionError
    else:
        cls = ConnectionClosedError
    failure = cls('%s: %s' % (kind, e))
    failure.__cause__ = e
    return failure
