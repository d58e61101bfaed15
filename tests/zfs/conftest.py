"""Fixtures for the zfsvol tests on real OpenZFS (inside the guest of tests/rigs/zfs.sh).

The integration tests are marked ``zfs`` and skip unless ``zpool list`` works, so the
host run skips them; ``./dev test`` then boots the guest once and runs
``pytest tests/zfs -m zfs`` inside it. After each driver call the tests ask ZFS
itself (``zfs list -Hp``, ``zfs get``, /dev/zvol) what exists. No mocks.
"""
import os
import subprocess

import pytest

from simulator.testkit import sim_pool, sr_maker
from zfs_rig import MiB, destroy_dataset, sh

POOL = "srkt"


def pytest_configure(config):
    config.addinivalue_line("markers", "zfs: needs real OpenZFS (runs in the tests/rigs/zfs.sh guest)")


def zfs_works():
    try:
        return subprocess.run(["zpool", "list", "-H"], capture_output=True,
                              timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def zpool(tmp_path_factory):
    """A scratch pool on the guest's empty disk (or a file), destroyed at the end."""
    if not zfs_works():
        pytest.skip("no usable OpenZFS here: run through tests/rigs/zfs.sh run -- ...")
    disk = os.environ.get("SRKIT_ZFS_DISK")
    if not disk:
        disk = str(tmp_path_factory.mktemp("zpool") / "disk.img")
        with open(disk, "wb") as f:
            f.truncate(3 * 1024 * MiB)
    sh("zpool", "create", "-f", "-o", "cachefile=none", POOL, disk)
    yield POOL
    sh("zpool", "destroy", "-f", POOL, check=False)


class ZFS(object):
    """ZFS's own view, for assertions."""

    PROPS = "name,type,origin,volsize,used,refreservation,volblocksize,srkit:meta"

    def rows(self, root):
        out = sh("zfs", "list", "-t", "all", "-r", "-Hp", "-o", self.PROPS, root)
        found = {}
        for line in out.splitlines():
            f = line.split("\t")
            found[f[0]] = dict(zip(self.PROPS.split(","), f))
        return found

    def names(self, root):
        return sorted(self.rows(root))

    def get(self, name, prop):
        """(value, source) of one property."""
        out = sh("zfs", "get", "-Hp", "-o", "value,source", prop, name)
        value, source = out.rstrip("\n").split("\t")
        return value, source

    def meta(self, name):
        import json
        value, source = self.get(name, "srkit:meta")
        return (json.loads(value) if value != "-" else None), source

    def exists(self, name):
        return subprocess.run(["zfs", "list", "-t", "all", name], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def zfs():
    return ZFS()


@pytest.fixture
def pool(tmp_path, zpool):
    with sim_pool(str(tmp_path / "pool"), hosts=1) as p:
        yield p


class SR(object):
    def __init__(self, pool, ref, dc):
        self.pool, self.ref, self.dc = pool, ref, dc
        self.uuid = pool.sr_record(ref)["uuid"]
        self.dataset = "%s/%s" % (dc["pool"], self.uuid)

    def loc(self, vdi):
        return self.pool.vdi_record(vdi)["location"]

    def zvol(self, vdi):
        return "%s/%s" % (self.dataset, self.loc(vdi))

    def purge(self):
        destroy_dataset(self.dataset)


@pytest.fixture
def make_sr(pool, zpool, zfs):
    with sr_maker(pool, "zfsvol", {"pool": zpool}, lambda ref, dc: SR(pool, ref, dc),
                  name_label="zfs") as make:
        yield make


@pytest.fixture(params=["pyzfs", "cli"])
def api(request):
    return request.param
