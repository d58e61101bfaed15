"""The export tests' own helpers (conftest.py holds their fixtures): an SR driven through
``srkit xe`` as a user types it, test images, and the independent tools that check them."""
import os
import random
import shutil
import subprocess
import sys

import pytest

from simulator.testkit import REPO

MiB = 1024 * 1024


def need_tools(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip("missing %s: run tests/rigs/export.sh install" % " ".join(missing))


class SR(object):
    """One SR of the pool, driven through ``srkit xe``."""

    def __init__(self, pool, ref, kind, tmp):
        self.pool, self.ref, self.kind, self.tmp = pool, ref, kind, tmp
        self.uuid = pool.sr_record(ref)["uuid"]

    def xe(self, *args, check=True, env=None, stdin=None, stdout=subprocess.PIPE):
        full = dict(os.environ, SRKIT_POOL=self.pool.path, **(env or {}))
        proc = subprocess.run([sys.executable, "-m", "simulator.cli", "xe"] + list(args),
                              cwd=REPO, env=full, stdin=stdin, stdout=stdout,
                              stderr=subprocess.PIPE)
        if check and proc.returncode != 0:
            raise AssertionError("srkit xe %s failed: %s" % (" ".join(args),
                                                              proc.stderr.decode()))
        return proc

    def vdi_uuids(self):
        out = self.xe("vdi-list", "sr-uuid=" + self.uuid, "--minimal").stdout.decode().strip()
        return set(u for u in out.split(",") if u)

    def create(self, size, label="disk"):
        return self.xe("vdi-create", "sr-uuid=" + self.uuid, "name-label=" + label,
                       "virtual-size=%d" % size).stdout.decode().strip()

    def snapshot(self, uuid):
        return self.xe("vdi-snapshot", "uuid=" + uuid).stdout.decode().strip()

    def write(self, uuid, pieces):
        """Write {offset: bytes} through the VDI's attached device."""
        ref = self.pool.by_uuid("VDI", uuid)
        path = self.pool.vdi_attach(ref, writable=True)["params"]
        try:
            fd = os.open(path, os.O_WRONLY)
            try:
                for offset, data in sorted(pieces.items()):
                    os.pwrite(fd, data, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        finally:
            self.pool.vdi_detach(ref)

    def read(self, uuid):
        """The whole content of a VDI, read through its attached device."""
        ref = self.pool.by_uuid("VDI", uuid)
        size = self.pool.vdi_record(ref)["virtual_size"]
        path = self.pool.vdi_attach(ref, writable=False)["params"]
        try:
            with open(path, "rb") as f:
                return f.read(int(size))
        finally:
            self.pool.vdi_detach(ref)


def pattern(kind, size, seed=1):
    """{offset: bytes}: a few scattered extents (sparse) or the whole disk (dense),
    half random and half repetitive so that compression has something to do."""
    rnd = random.Random(seed)

    def block(n):
        half = n // 2
        return rnd.randbytes(half) + (b"srkit export " * (n // 13 + 1))[:n - half]
    if kind == "dense":
        return {0: block(size)}
    return {0: block(4096), 3 * MiB + 512: block(700 * 1024), 9 * MiB: block(2 * MiB + 4096),
            size - 64 * 1024: block(64 * 1024)}


def apply(image, pieces):
    image = bytearray(image)
    for offset, data in pieces.items():
        image[offset:offset + len(data)] = data
    return bytes(image)


def decompress(path, out):
    """The image inside an export, by the zstd CLI (srkit's reader plays no part)."""
    subprocess.run(["zstd", "-d", "-q", "-f", path, "-o", out], check=True)
    return out


def qemu_img(*args):
    return subprocess.run(["qemu-img"] + list(args), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT)


QEMU_FORMAT = {"raw": "raw", "vhd": "vpc", "qcow2": "qcow2"}
