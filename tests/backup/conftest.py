"""Fixtures for the backup tests: a simulated pool served over HTTP (as `srkit serve`
does), a real ``XenAPI.Session`` logged in to it, and one SR per CBT driver.

Drivers: ``fakecbt`` (the file-backed fake of tests/simulator, always there),
``rbd`` (needs SRKIT_CEPH_*: tests/rigs/ceph.sh) and ``s3`` (needs SRKIT_S3_*:
tests/rigs/s3.sh); each skips when its rig is absent or its driver does not
advertise VDI_CONFIG_CBT.
"""
import os
import sys

import pytest
import XenAPI

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "simulator"))
from fake_drivers import FAKE_CBT_DRIVER, write_driver  # noqa: E402

from backup_rig import GRANULE  # noqa: E402

DRIVERS = ("fakecbt", "rbd", "s3")


def _device_config(driver, tmp_path):
    env = os.environ
    if driver == "fakecbt":
        return {"location": str(tmp_path / "fakecbt")}
    if driver == "rbd":
        if not env.get("SRKIT_CEPH_MONITORS"):
            pytest.skip("no Ceph cluster: tests/rigs/ceph.sh up DIR; eval its env")
        return {"monitors": env["SRKIT_CEPH_MONITORS"], "user": env["SRKIT_CEPH_USER"],
                "key": env["SRKIT_CEPH_KEY"], "pool": env.get("SRKIT_CEPH_POOL", "rbd"),
                "datapath": "fuse"}
    if not env.get("SRKIT_S3_ENDPOINT"):
        pytest.skip("no S3 server: tests/rigs/s3.sh up DIR; eval its env")
    return {"endpoint": env["SRKIT_S3_ENDPOINT"], "bucket": env["SRKIT_S3_BUCKET"],
            "access_key": env["SRKIT_S3_ACCESS_KEY"], "secret_key": env["SRKIT_S3_SECRET_KEY"],
            "prefix": "backup-%s/" % os.urandom(4).hex(), "cache_dir": str(tmp_path / "cache"),
            "chunk_size": str(GRANULE["s3"])}


# s3's run is minutes of driver calls: a long row (tests/conftest.py)
@pytest.fixture(params=[pytest.param(d, marks=[pytest.mark.long] if d == "s3" else [])
                        for d in DRIVERS])
def driver(request):
    return request.param


@pytest.fixture
def pool(driver, tmp_path):
    from simulator import Pool
    from simulator.testkit import SM_DIR, cleanup_datapaths, detach_all
    sm_dir = SM_DIR
    if driver == "fakecbt":
        sm_dir = str(tmp_path / "sm")
        os.makedirs(sm_dir)
        write_driver(sm_dir, "FakeCbt", FAKE_CBT_DRIVER)
    with Pool(str(tmp_path / "pool"), sm_dir=sm_dir) as p:
        try:
            yield p
        finally:
            p.nbd.close_all()
            detach_all(p)
    cleanup_datapaths(str(tmp_path), servers=(b"nbd", b"rbd-fuse"))


@pytest.fixture
def sr(pool, driver, tmp_path):
    dc = _device_config(driver, tmp_path)
    if "VDI_CONFIG_CBT" not in pool.features(driver):
        pytest.skip("the %s driver does not advertise VDI_CONFIG_CBT (yet)" % driver)
    ref = pool.sr_create(driver, dc, name_label="backup-" + driver, shared=True)
    yield ref
    for vdi in pool.sr_record(ref)["VDIs"]:
        try:
            pool.vdi_destroy(vdi)
        except Exception:
            pass


@pytest.fixture
def xenapi(pool):
    """A XenAPI client session over HTTP, as a backup tool opens one."""
    port = pool.server.listen_tcp(0)
    session = XenAPI.Session("http://127.0.0.1:%d/" % port)
    session.xenapi.login_with_password("root", "", "1.0", "srkit-backup-test")
    yield session.xenapi
    try:
        session.xenapi.session.logout()
    finally:
        pool.server.stop_tcp()
