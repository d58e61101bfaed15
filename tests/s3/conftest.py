"""Fixtures for the S3 driver tests: a real S3 server (tests/rigs/s3.sh up), a simulated
two-host pool running sm_drivers/S3SR, and a boto3 client to check what the bucket
itself holds after each driver call. No mocks.

Skips cleanly unless SRKIT_S3_ENDPOINT is set (eval "$(tests/rigs/s3.sh env DIR)").

Two servers: SeaweedFS (tests/rigs/s3.sh, SRKIT_S3_*) for every test, and radosgw
(tests/rigs/rgw.sh, SRKIT_RGW_*) for the tests marked ``s3_servers`` (layout and
lease): those run once per server, and the radosgw one skips when its rig is not up.
"""
import json
import os
import signal
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
MiB = 1024 * 1024
CHUNK = MiB


# server name -> (its rig, the prefix of the variables that rig's `env` exports)
SERVERS = {"seaweedfs": ("s3", "SRKIT_S3_"), "radosgw": ("rgw", "SRKIT_RGW_")}


def pytest_configure(config):
    config.addinivalue_line("markers", "s3_servers: run once per S3 server (SeaweedFS and "
                            "radosgw); the radosgw run skips unless tests/rigs/rgw.sh is up")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("s3_servers") and \
            "s3_server" in metafunc.fixturenames:
        metafunc.parametrize("s3_server", sorted(SERVERS, reverse=True))


@pytest.fixture
def s3_server():
    """The server a test runs on (parametrized for tests marked ``s3_servers``)."""
    return "seaweedfs"


def _need_server(name):
    rig, prefix = SERVERS[name]
    if not os.environ.get(prefix + "ENDPOINT"):
        pytest.skip("no %s: run tests/rigs/%s.sh up DIR and eval \"$(tests/rigs/%s.sh env DIR)\""
                    % (name, rig, rig))
    try:
        import boto3  # noqa: F401
        import zstandard  # noqa: F401
    except ImportError:
        pytest.skip("boto3/zstandard not importable by the test python: tests/rigs/s3.sh install")


@pytest.fixture
def s3_env(s3_server):
    """The server's SRKIT_<RIG>_* variables, always under SRKIT_S3_* names."""
    _need_server(s3_server)
    prefix = SERVERS[s3_server][1]
    return dict(("SRKIT_S3_" + k[len(prefix):], v) for k, v in os.environ.items()
                if k.startswith(prefix))


def make_admin(endpoint, access, secret):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                        aws_secret_access_key=secret, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 2}))


_admins = {}


@pytest.fixture
def admin(s3_env):
    """The bucket's own view, for assertions (one client per server)."""
    key = (s3_env["SRKIT_S3_ENDPOINT"], s3_env["SRKIT_S3_ACCESS_KEY"])
    if key not in _admins:
        _admins[key] = make_admin(s3_env["SRKIT_S3_ENDPOINT"], s3_env["SRKIT_S3_ACCESS_KEY"],
                                  s3_env["SRKIT_S3_SECRET_KEY"])
    return _admins[key]


@pytest.fixture
def device_config(s3_env, tmp_path):
    return {
        "endpoint": s3_env["SRKIT_S3_ENDPOINT"],
        "bucket": s3_env["SRKIT_S3_BUCKET"],
        "access_key": s3_env["SRKIT_S3_ACCESS_KEY"],
        "secret_key": s3_env["SRKIT_S3_SECRET_KEY"],
        "prefix": "t-%s/" % os.urandom(4).hex(),
        "cache_dir": str(tmp_path / "cache"),
        "chunk_size": str(CHUNK),
    }


def cleanup_datapaths(root):
    """Safety net: loop devices, mounts and servers a failed test left under ``root``."""
    for loop in os.listdir("/sys/block"):
        try:
            with open("/sys/block/%s/loop/backing_file" % loop) as f:
                if f.read().startswith(root):
                    subprocess.run(["losetup", "-d", "/dev/" + loop], capture_output=True)
        except OSError:
            pass
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(root)]
    for m in mounts:
        subprocess.run(["umount", "-l", m], capture_output=True)
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                cmd = f.read().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(root.encode()) for a in cmd[1:]) and \
                any(b"nbd" in a for a in cmd[:3]):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture
def pool(tmp_path):
    from simulator import Pool
    root = str(tmp_path)
    with Pool(str(tmp_path / "pool"), sm_dir=os.path.join(REPO, "sm_drivers"), hosts=2) as p:
        yield p
        for _, dp in list(p.db.all("datapath")):
            try:
                p.vdi_detach(dp["VDI"], host=dp["host"])
            except Exception:
                pass
    cleanup_datapaths(root)


class SR(object):
    """An s3 SR of the simulated pool plus the bucket's view of its prefix."""

    def __init__(self, pool, ref, admin, device_config):
        self.pool, self.ref, self.admin = pool, ref, admin
        self.dc = device_config
        self.bucket = device_config["bucket"]
        self.uuid = pool.sr_record(ref)["uuid"]
        self.root = device_config["prefix"] + self.uuid + "/"

    def keys(self, sub=""):
        out, token = [], None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": self.root + sub}
            if token:
                kw["ContinuationToken"] = token
            r = self.admin.list_objects_v2(**kw)
            out += [(o["Key"], o["Size"]) for o in r.get("Contents") or ()]
            token = r.get("NextContinuationToken")
            if not r.get("IsTruncated"):
                return out

    def chunks(self):
        return sorted(k[len(self.root + "chunks/"):] for k, _ in self.keys("chunks/"))

    def manifest(self, uuid):
        body = self.admin.get_object(Bucket=self.bucket,
                                     Key=self.root + "vdi/%s.json" % uuid)["Body"].read()
        return json.loads(body)

    def manifests(self):
        return sorted(k[len(self.root + "vdi/"):-5] for k, _ in self.keys("vdi/"))

    def location(self, vdi_ref):
        return self.pool.vdi_record(vdi_ref)["location"]

    def config(self):
        """The driver's view of this SR's device-config (for in-process gc calls)."""
        from drivers.s3 import connection
        return connection.validate(dict(self.dc, chunk_size=int(self.dc["chunk_size"])))

    def client(self):
        from drivers.s3 import connection
        return connection.make_client(self.config())

    def gc(self, grace=0):
        from drivers.s3 import gc
        return gc.collect(self.client(), self.bucket, self.root, grace)

    def purge(self):
        keys = [k for k, _ in self.keys()]
        for i in range(0, len(keys), 1000):
            self.admin.delete_objects(Bucket=self.bucket, Delete={
                "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})


@pytest.fixture
def make_sr(pool, admin, device_config):
    made = []

    def make(**overrides):
        dc = dict(device_config)
        dc.update(overrides)
        ref = pool.sr_create("s3", dc, name_label="s3", shared=True)
        sr = SR(pool, ref, admin, dc)
        made.append(sr)
        return sr
    yield make
    for _, dp in list(pool.db.all("datapath")):
        try:
            pool.vdi_detach(dp["VDI"], host=dp["host"])
        except Exception:
            pass
    for sr in made:
        sr.purge()


@pytest.fixture
def sr(make_sr):
    return make_sr()


def write_at(path, offset, data):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path, offset, length):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def write_vdi(pool, vdi, offset, data, host=None):
    path = pool.vdi_attach(vdi, host=host)["params"]
    try:
        write_at(path, offset, data)
    finally:
        pool.vdi_detach(vdi, host=host)


def read_vdi(pool, vdi, offset, length, host=None):
    path = pool.vdi_attach(vdi, host=host, writable=False)["params"]
    try:
        return read_at(path, offset, length)
    finally:
        pool.vdi_detach(vdi, host=host)


def pattern(seed, length):
    """Incompressible-enough, distinct bytes per seed."""
    import hashlib
    out = bytearray()
    block = hashlib.sha256(str(seed).encode()).digest()
    while len(out) < length:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:length])
