"""drivers/s3/s3client.py, the driver's own S3 client: its signature against AWS's
published example, its retries against a server that misbehaves on purpose, every call
against each real S3 server (checked with boto3, an independent client), and that no
driver process imports boto3."""
import os
import socket
import subprocess
import threading
import time

import pytest

from drivers.s3 import connection, s3client

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_signature_is_aws_sigv4_example(monkeypatch):
    """AWS's "Example: GET Object" of the SigV4 documentation for S3 (header-based auth):
    same keys, time, request; the signature it publishes."""
    client = s3client.Client('https://examplebucket.s3.amazonaws.com',
                             access_key='AKIAIOSFODNN7EXAMPLE',
                             secret_key='wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY')
    then = time.gmtime(1369353600)               # 2013-05-24T00:00:00Z
    monkeypatch.setattr(s3client.time, 'gmtime', lambda: then)
    headers = client._sign('GET', '/test.txt', '', {'range': 'bytes=0-9'},
                           s3client.EMPTY_SHA256)
    assert headers['authorization'] == (
        'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, '
        'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, '
        'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41')


class ScriptedServer(object):
    """A loopback HTTP server answering each request with the next of ``replies``
    (status, close-after): it can drop a kept-alive connection or answer 503."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.connections = 0
        self.requests = 0
        self.sock = socket.socket()
        self.sock.bind(('127.0.0.1', 0))
        self.sock.listen(8)
        self.endpoint = 'http://127.0.0.1:%d' % self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn):
        f = conn.makefile('rb')
        while self.replies:
            lines = []
            while True:
                line = f.readline()
                if not line:
                    conn.close()
                    return
                if line in (b'\r\n', b'\n'):
                    break
                lines.append(line)
            self.requests += 1
            status, close = self.replies.pop(0)
            body = b'' if status < 300 else b'<Error><Code>SlowDown</Code></Error>'
            conn.sendall(b'HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s'
                         % (status, len(body), body))
            if close:   # without saying so: the client finds out on its next request
                conn.close()
                return
        conn.close()

    def close(self):
        self.sock.close()


def test_a_kept_alive_connection_the_server_dropped_costs_no_attempt():
    server = ScriptedServer([(200, True), (200, False)])
    try:
        client = s3client.Client(server.endpoint, attempts=1)
        client.head_bucket(Bucket='b')
        time.sleep(0.2)            # the server has closed it by now
        client.head_bucket(Bucket='b')
        assert (server.requests, server.connections) == (2, 2)
    finally:
        server.close()


def test_a_server_error_is_retried_once_then_is_the_fault():
    server = ScriptedServer([(503, False), (200, False), (503, False), (503, False)])
    try:
        client = s3client.Client(server.endpoint, attempts=2)
        client.head_bucket(Bucket='b')           # 503, then 200
        with pytest.raises(s3client.ClientError) as e:
            client.head_bucket(Bucket='b')       # 503 twice
        assert server.requests == 4
        assert connection.error_code(e.value) == ('503', 503)
    finally:
        server.close()


def test_an_unreachable_endpoint_is_sr_unavailable_at_once():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()                                    # nothing listens there now
    t = time.monotonic()
    with pytest.raises(s3client.EndpointConnectionError) as e:
        s3client.Client('http://127.0.0.1:%d' % port).head_bucket(Bucket='b')
    assert time.monotonic() - t < 5
    fault = connection.fault(e.value, 'sr_attach')
    assert fault.name == 'SRUnavailable' and 'EndpointConnectionError' in str(fault)


@pytest.mark.s3_servers
def test_every_call_on_the_real_server(s3_env, admin):
    """What the driver relies on, each checked with boto3 (the admin client)."""
    bucket = s3_env["SRKIT_S3_BUCKET"]
    prefix = "s3client-%s/" % os.urandom(3).hex()
    client = connection.make_client(connection.validate({
        "endpoint": s3_env["SRKIT_S3_ENDPOINT"], "bucket": bucket,
        "access_key": s3_env["SRKIT_S3_ACCESS_KEY"],
        "secret_key": s3_env["SRKIT_S3_SECRET_KEY"]}))
    odd = prefix + "a b+c=d~e%f/é"      # every character class a signature escapes
    reply = client.put_object(Bucket=bucket, Key=odd, Body=b"odd", Metadata={"srkit-x": "1"},
                              Conditional={"If-None-Match": "*"})
    got = admin.get_object(Bucket=bucket, Key=odd)
    assert got["Body"].read() == b"odd" and got["Metadata"] == {"srkit-x": "1"}
    assert reply["ETag"] == got["ETag"]
    mine = client.get_object(Bucket=bucket, Key=odd)
    assert mine["Body"].read() == b"odd" and mine["Metadata"] == {"srkit-x": "1"}
    assert client.head_object(Bucket=bucket, Key=odd)["ContentLength"] == 3
    with pytest.raises(s3client.ClientError) as e:
        client.get_object(Bucket=bucket, Key=prefix + "missing")
    assert connection.is_missing(e.value)
    with pytest.raises(s3client.ClientError) as e:
        client.head_object(Bucket=bucket, Key=prefix + "missing")
    assert connection.is_missing(e.value)

    keys = [prefix + "many/%03d" % i for i in range(7)]
    for k in keys:
        admin.put_object(Bucket=bucket, Key=k, Body=k.encode())
    listed, token = [], None
    while True:
        kwargs = {"Bucket": bucket, "Prefix": prefix + "many/", "MaxKeys": 3}
        if token:
            kwargs["ContinuationToken"] = token
        page = client.list_objects_v2(**kwargs)
        listed += [(c["Key"], c["Size"]) for c in page["Contents"]]
        token = page.get("NextContinuationToken")
        if not page["IsTruncated"]:
            break
    assert listed == [(k, len(k)) for k in keys]
    tops = client.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")
    assert sorted(p["Prefix"] for p in tops["CommonPrefixes"]) == [prefix + "a b+c=d~e%f/",
                                                                   prefix + "many/"]

    assert client.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": k} for k in keys + [odd]], "Quiet": True})["Errors"] == []
    assert admin.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents") is None


def test_a_driver_process_never_imports_boto3(s3_env):
    """An sr_create + scan-like listing under the system python: no boto3, no botocore."""
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from drivers.s3 import connection, gc\n"
            "c = connection.make_client(connection.validate({'endpoint': %r, 'bucket': %r,"
            " 'access_key': %r, 'secret_key': %r}))\n"
            "gc.list_objects(c, %r, 'nothing-here/')\n"
            % (REPO, s3_env["SRKIT_S3_ENDPOINT"], s3_env["SRKIT_S3_BUCKET"],
               s3_env["SRKIT_S3_ACCESS_KEY"], s3_env["SRKIT_S3_SECRET_KEY"],
               s3_env["SRKIT_S3_BUCKET"]))
    proc = subprocess.run(["/usr/bin/python3", "-X", "importtime", "-c", code],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = set(line.split("|")[-1].strip() for line in proc.stderr.splitlines()
                   if line.startswith("import time:"))
    assert "http.client" in imported            # it did talk to the server
    assert not {m for m in imported if m.split(".")[0] in ("boto3", "botocore", "urllib3")}
