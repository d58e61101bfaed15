"""The single-writer lease (drivers/s3/lease.py) and the conditional requests it and the
manifests rely on, on each real S3 server (SeaweedFS and radosgw): what each server does
with If-None-Match / If-Match (the table in docs/s3.md, "Where the servers differ"), and
that the lease elects one writer whether or not the server honours If-None-Match."""
import os
import threading

import pytest

from framework.errors import SRError
from simulator.testkit import RecordingLog

pytestmark = pytest.mark.s3_servers


def _client(s3_env):
    from drivers.s3 import connection
    return connection.make_client(connection.validate({
        "endpoint": s3_env["SRKIT_S3_ENDPOINT"], "bucket": s3_env["SRKIT_S3_BUCKET"],
        "access_key": s3_env["SRKIT_S3_ACCESS_KEY"],
        "secret_key": s3_env["SRKIT_S3_SECRET_KEY"]}))


def _with_headers(client, op, headers):
    """Send ``headers`` verbatim on every ``op`` of this boto3 client."""
    def put(request, **kwargs):
        for name, value in headers.items():
            if value is None:
                if name in request.headers:
                    del request.headers[name]
            else:
                request.headers[name] = value
    client.meta.events.register_last("before-sign.s3.%s" % op, put)
    return client


def _status(call):
    from drivers.s3 import connection
    try:
        call()
    except Exception as e:
        return connection.error_code(e)[1]
    return 200


@pytest.fixture
def keys(s3_env, admin):
    bucket = s3_env["SRKIT_S3_BUCKET"]
    prefix = "lease-%s/" % os.urandom(4).hex()
    yield bucket, prefix
    listed = admin.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents") or []
    if listed:
        admin.delete_objects(Bucket=bucket, Delete={
            "Objects": [{"Key": o["Key"]} for o in listed], "Quiet": True})


# what each server answers (HTTP status, and whether the object changed); docs/s3.md
# keeps the same table
EXPECTED = {
    "seaweedfs": {"put-if-none-match-existing": (412, False), "put-if-match-quoted": (200, True),
                  "put-if-match-bare": (200, True), "put-if-match-stale": (412, False),
                  "delete-if-match-stale": (412, False)},
    "radosgw": {"put-if-none-match-existing": (412, False), "put-if-match-quoted": (412, False),
                "put-if-match-bare": (200, True), "put-if-match-stale": (412, False),
                "delete-if-match-stale": (200, True)},
}


@pytest.mark.parametrize("case", sorted(EXPECTED["seaweedfs"]))
def test_server_conditional_requests_as_documented(s3_server, s3_env, admin, keys, case):
    """Raw requests (the admin client, headers exactly as given) against the table."""
    import boto3
    from botocore.config import Config
    bucket, prefix = keys
    key = prefix + "obj"
    etag = admin.put_object(Bucket=bucket, Key=key, Body=b"first")["ETag"]
    raw = boto3.client("s3", endpoint_url=s3_env["SRKIT_S3_ENDPOINT"],
                       aws_access_key_id=s3_env["SRKIT_S3_ACCESS_KEY"],
                       aws_secret_access_key=s3_env["SRKIT_S3_SECRET_KEY"],
                       region_name="us-east-1",
                       config=Config(s3={"addressing_style": "path"},
                                     retries={"max_attempts": 1}))
    header = {"put-if-none-match-existing": ("If-None-Match", "*"),
              "put-if-match-quoted": ("If-Match", etag),
              "put-if-match-bare": ("If-Match", etag.strip('"')),
              "put-if-match-stale": ("If-Match", '"0123456789abcdef0123456789abcdef"'),
              "delete-if-match-stale": ("If-Match", "0123456789abcdef0123456789abcdef")}[case]
    if case.startswith("delete"):
        _with_headers(raw, "DeleteObject", dict([header]))
        status = _status(lambda: raw.delete_object(Bucket=bucket, Key=key))
        changed = _status(lambda: admin.head_object(Bucket=bucket, Key=key)) == 404
    else:
        _with_headers(raw, "PutObject", dict([header]))
        status = _status(lambda: raw.put_object(Bucket=bucket, Key=key, Body=b"second"))
        changed = admin.get_object(Bucket=bucket, Key=key)["Body"].read() == b"second"
    assert (status, changed) == EXPECTED[s3_server][case]


def test_driver_if_match_works_on_every_server(s3_env, keys):
    """connection.py sends the bare ETag, which both servers match (radosgw refuses a
    quoted one): a manifest update succeeds, a stale one is a Conflict."""
    from drivers.s3 import manifest
    bucket, prefix = keys
    client = _client(s3_env)
    key = prefix + "vdi/x.json"
    doc = manifest.new("x", 65536, 65536, {})
    etag = manifest.store(client, bucket, key, doc, create=True)
    with pytest.raises(manifest.Conflict):
        manifest.store(client, bucket, key, doc, create=True)
    doc["meta"] = {"name_label": "renamed"}
    manifest.store(client, bucket, key, doc, etag)
    with pytest.raises(manifest.Conflict):
        manifest.store(client, bucket, key, doc, etag)   # the ETag changed
    assert manifest.load(client, bucket, key)[0]["meta"] == {"name_label": "renamed"}


@pytest.mark.parametrize("if_none_match", ["honoured", "ignored"])
def test_racing_activations_elect_exactly_one_writer(s3_env, keys, if_none_match):
    """Two hosts both find the lease free, both PUT it, then both read it back (the
    worst interleaving, forced with barriers). With If-None-Match the second PUT is
    refused; without it (a server that ignores the header, as the request looks when
    the header is dropped) the read-back alone must still leave exactly one holder."""
    from drivers.s3 import lease
    bucket, prefix = keys
    key = prefix + "lease/vdi"
    before_put = threading.Barrier(2, timeout=60)
    after_put = threading.Barrier(2, timeout=60)
    results = {}

    def host(name):
        client = _client(s3_env)
        put = client.put_object

        def racing_put(**kwargs):
            if if_none_match == "ignored":
                kwargs["Conditional"] = {}
            before_put.wait()
            try:
                return put(**kwargs)
            finally:
                after_put.wait()
        client.put_object = racing_put
        try:
            results[name] = lease.acquire(client, bucket, key, "vdi", name)
        except SRError as e:
            results[name] = e

    threads = [threading.Thread(target=host, args=(n,)) for n in ("h0", "h1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [n for n, r in results.items() if isinstance(r, dict)]
    losers = [r for r in results.values() if isinstance(r, SRError)]
    assert len(winners) == 1 and len(losers) == 1, results
    assert losers[0].name == "VDIInUse"
    held, _ = lease.read(_client(s3_env), bucket, key)
    assert held["host"] == winners[0] and held["token"] == results[winners[0]]["token"]


def test_release_by_a_fenced_host_leaves_the_new_holder_alone(s3_env, admin, keys):
    """h0 holds the lease; the admin fences it (deletes the lease); h1 takes it; h0 comes
    back and deactivates. radosgw ignores If-Match on DELETE, so what keeps h1's lease is
    the holder check release() makes before its DELETE."""
    from drivers.s3 import lease
    bucket, prefix = keys
    key = prefix + "lease/vdi"
    client = _client(s3_env)
    lease.acquire(client, bucket, key, "vdi", "h0")
    admin.delete_object(Bucket=bucket, Key=key)            # fence h0
    mine = lease.acquire(client, bucket, key, "vdi", "h1")
    with pytest.raises(SRError) as e:
        lease.acquire(client, bucket, key, "vdi", "h0")
    assert e.value.name == "VDIInUse"

    log = RecordingLog()
    lease.release(client, bucket, key, "h0", log)
    assert lease.read(client, bucket, key)[0] == mine
    assert log.errors and "held by h1" in log.errors[0]
    lease.release(client, bucket, key, "h1", log)
    assert lease.read(client, bucket, key) == (None, None)
