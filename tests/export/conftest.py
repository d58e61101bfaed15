"""Fixtures for the export/import tests: a simulated pool with a `local` SR and,
when the Ceph rig runs (SRKIT_CEPH_CONF), an `rbd` SR on the real cluster.

Everything goes through ``srkit xe`` as a user types it; what the files hold is
checked with the zstd CLI and qemu-img, never only with srkit's own reader.
"""
import os

import pytest

from export_rig import SR
from simulator.testkit import detach_all, sim_pool


@pytest.fixture
def pool(tmp_path):
    with sim_pool(str(tmp_path / "pool"), hosts=1) as p:
        yield p


@pytest.fixture
def local_sr(pool, tmp_path):
    data = tmp_path / "local-sr"
    data.mkdir()
    ref = pool.sr_create("local", {"location": str(data)}, name_label="local")
    sr = SR(pool, ref, "local", tmp_path)
    sr.root = str(data)
    return sr


def _ceph_device_config():
    if not os.environ.get("SRKIT_CEPH_CONF"):
        pytest.skip("no Ceph cluster: run tests/rigs/ceph.sh up DIR and eval its env")
    e = os.environ
    return {"monitors": e["SRKIT_CEPH_MONITORS"], "user": e["SRKIT_CEPH_USER"],
            "key": e["SRKIT_CEPH_KEY"], "pool": e.get("SRKIT_CEPH_POOL", "rbd"),
            "datapath": "fuse"}


@pytest.fixture
def rbd_sr(pool, tmp_path):
    dc = _ceph_device_config()
    ref = pool.sr_create("rbd", dc, name_label="ceph", shared=True)
    sr = SR(pool, ref, "rbd", tmp_path)
    yield sr
    detach_all(pool)
    # snapshots before the VDIs they belong to
    for _ in range(3):
        for ref, rec in sorted(pool.db.all("VDI"), key=lambda x: not x[1]["is_a_snapshot"]):
            if rec["SR"] == sr.ref:
                try:
                    pool.vdi_destroy(ref)
                except Exception:
                    pass
    try:
        pool.sr_destroy(sr.ref)
    except Exception:
        pass


@pytest.fixture(params=["local", "rbd"])
def any_sr(request):
    return request.getfixturevalue(request.param + "_sr")
