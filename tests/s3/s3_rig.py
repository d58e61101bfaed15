"""The S3 tests' own helpers (conftest.py holds their fixtures): an SR seen from the
bucket, an admin client, data through a VDI attached for the moment."""
import json

from simulator.testkit import processes, read_at, write_at

MiB = 1024 * 1024
CHUNK = MiB


def make_admin(endpoint, access, secret):
    import boto3
    from botocore.config import Config
    return boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=access,
                        aws_secret_access_key=secret, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"},
                                      retries={"max_attempts": 2}))


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


def servers_of(uuid):
    """pids of the NBD server serving VDI ``uuid`` (drivers/s3/nbd_server.py; its socket
    argument names the VDI)."""
    return [pid for pid, argv in processes()
            if len(argv) > 2 and argv[1].endswith(b"nbd_server.py") and
            any(uuid.encode() in a for a in argv[2:])]


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


def discard_and_sync(path, offset, length, zeroes=False):
    """blkdiscard (TRIM, or -z: WRITE_ZEROES) on an attached device, then fsync it: the
    NBD server's flush stores what the discard made before this returns."""
    import os
    import subprocess
    subprocess.run(["blkdiscard"] + (["-z"] if zeroes else []) +
                   ["-o", str(offset), "-l", str(length), path], check=True)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
