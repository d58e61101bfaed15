"""Fixtures of the host-datapath suites: what a real XCP-ng host runs (rbd-nbd, krbd,
the kernel NBD client), inside the guest of tests/rigs/guest.sh, where nbd.ko and
rbd.ko are loaded. Every test module here sets ``pytestmark = pytest.mark.hostpath``
and its tests skip elsewhere; ``./dev test`` runs them in the guest, beside the ZFS
suite, in the same boot.

The guest has no network but its loopback, so the servers run inside it, started
from the host's binaries: for rbd, one single-node Ceph per session
(tests/rigs/ceph.sh up: mon + memstore OSD, cephx, no mgr), stopped at the end.
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
sys.path.insert(0, os.path.join(TESTS, "ceph"))   # ceph_rig, namespace_cleanup

from rbd_guest import ceph_cluster, kernel_datapaths  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "hostpath: needs nbd.ko/rbd.ko (runs in the "
                            "tests/rigs/guest.sh guest)")


@pytest.fixture(scope="session")
def guest_ceph(tmp_path_factory):
    """A Ceph cluster on the guest's loopback, for the session (rbd_guest.ceph_cluster)."""
    reason = kernel_datapaths()
    if reason:
        pytest.skip(reason)
    with ceph_cluster(str(tmp_path_factory.mktemp("ceph"))) as values:
        yield values


@pytest.fixture(scope="session")
def cluster(guest_ceph):
    """An admin connection: Ceph's own view, for assertions."""
    import rados
    c = rados.Rados(conffile=guest_ceph["SRKIT_CEPH_CONF"], conf={"log_to_stderr": "false"})
    c.connect(timeout=60)
    yield c
    c.shutdown()


@pytest.fixture
def pool(tmp_path, guest_ceph):
    """Two simulated hosts (one kernel: the guest's), emptied of datapaths at the end;
    a test that left a daemon or a mapping behind fails there."""
    from rbd_guest import unmap_everything
    from simulator.testkit import sim_pool
    with sim_pool(str(tmp_path / "pool"), hosts=2) as p:
        yield p
    left = unmap_everything()
    assert not left, "left mapped after the test: %s" % left


@pytest.fixture
def device_config(guest_ceph):
    return {"monitors": guest_ceph["SRKIT_CEPH_MONITORS"], "user": guest_ceph["SRKIT_CEPH_USER"],
            "key": guest_ceph["SRKIT_CEPH_KEY"], "pool": guest_ceph["SRKIT_CEPH_POOL"]}


@pytest.fixture
def make_sr(pool, cluster, device_config):
    """make(datapath=..., **device-config overrides): a shared rbd SR of the pool."""
    from ceph_rig import SR
    from simulator.testkit import sr_maker
    with sr_maker(pool, "rbd", device_config, lambda ref, dc: SR(pool, ref, cluster, dc),
                  name_label="ceph", shared=True) as make:
        yield make
