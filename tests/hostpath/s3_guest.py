"""Fixtures of the s3 host-datapath tests (the kernel NBD client, /dev/nbdN), imported by
the test_s3_*.py modules of this directory: they run in the qemu guest of
tests/rigs/zfs.sh, whose Debian kernel has nbd.ko, and skip anywhere the nbd module
cannot be loaded.

The S3 server is a SeaweedFS of the guest's own, started by tests/rigs/s3.sh from the
host's binary (the venv's ``weed``, seen through the guest's read-only view of the
host) on the guest's loopback: the guest has no network device, so nothing it runs is
reachable from outside it, and it reaches nothing outside. Its data lives in the
guest's tmpfs and goes with the guest.
"""
import os
import subprocess
import sys

import pytest

from simulator.testkit import REPO, cleanup_datapaths, sim_pool, sr_maker

sys.path.insert(0, os.path.join(REPO, "tests", "s3"))
from s3_rig import CHUNK, SR, make_admin, servers_of  # noqa: E402,F401 (re-exported)

RIG = os.path.join(REPO, "tests", "rigs", "s3.sh")


def nbd_usable():
    if not os.path.isdir("/sys/module/nbd"):
        subprocess.run(["modprobe", "nbd"], capture_output=True)
    return os.path.isdir("/sys/module/nbd") and \
        subprocess.run(["which", "nbd-client"], capture_output=True).returncode == 0


def connected_nbds():
    """/dev/nbdN with a connection (the kernel's view)."""
    return sorted("/dev/" + n for n in os.listdir("/sys/block")
                  if n.startswith("nbd") and os.path.exists("/sys/block/%s/pid" % n))


@pytest.fixture(scope="session")
def guest_s3(tmp_path_factory):
    """SeaweedFS on the guest's loopback; the SRKIT_S3_* values of its rig."""
    if not nbd_usable():
        pytest.skip("no nbd module here: run through tests/rigs/zfs.sh run -- ...")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    d = str(tmp_path_factory.mktemp("s3rig") / "rig")
    env = dict(os.environ, SRKIT_S3_PY=sys.executable)
    subprocess.run(["bash", RIG, "up", d], check=True, timeout=300, env=env)
    try:
        out = subprocess.run(["bash", RIG, "env", d], check=True, capture_output=True,
                             text=True, env=env).stdout
        values = dict(part.split("=", 1) for line in out.splitlines()
                      for part in line.replace("export ", "").split())
        values["dir"] = d
        yield values
    finally:
        subprocess.run(["bash", RIG, "down", d], timeout=120, env=env)


@pytest.fixture
def admin(guest_s3):
    return make_admin(guest_s3["SRKIT_S3_ENDPOINT"], guest_s3["SRKIT_S3_ACCESS_KEY"],
                      guest_s3["SRKIT_S3_SECRET_KEY"])


@pytest.fixture
def device_config(guest_s3, tmp_path):
    return {
        "endpoint": guest_s3["SRKIT_S3_ENDPOINT"],
        "bucket": guest_s3["SRKIT_S3_BUCKET"],
        "access_key": guest_s3["SRKIT_S3_ACCESS_KEY"],
        "secret_key": guest_s3["SRKIT_S3_SECRET_KEY"],
        "prefix": "t-%s/" % os.urandom(4).hex(),
        "cache_dir": str(tmp_path / "cache"),
        "chunk_size": str(CHUNK),
        "datapath": "auto",
    }


@pytest.fixture
def nbds(guest_s3):
    """() -> the /dev/nbdN connected since the test started (other suites' devices, in
    the same guest, are not this test's)."""
    before = set(connected_nbds())
    return lambda: [d for d in connected_nbds() if d not in before]


@pytest.fixture
def pool(tmp_path, nbds):
    """A two-host simulated pool; afterwards no device is left connected, no server runs."""
    with sim_pool(str(tmp_path / "pool"), hosts=2) as p:
        yield p
    left = nbds()
    for dev in left:
        subprocess.run(["nbd-client", "-d", dev], capture_output=True)
    cleanup_datapaths(str(tmp_path), servers=(b"nbd",))
    assert left == [], "devices left connected: %s" % left


@pytest.fixture
def make_sr(pool, admin, device_config):
    with sr_maker(pool, "s3", device_config, lambda ref, dc: SR(pool, ref, admin, dc),
                  name_label="s3", shared=True) as make:
        yield make


@pytest.fixture
def sr(make_sr):
    return make_sr()
