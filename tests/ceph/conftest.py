"""Fixtures for the RBD driver tests: a real Ceph cluster (tests/rigs/ceph.sh up),
a simulated pool running sm_drivers/RBDSR, and librbd handles to check what
Ceph itself reports after each driver call. No mocks.

Skips cleanly unless SRKIT_CEPH_CONF is set (eval "$(tests/rigs/ceph.sh env DIR)")
and the rados/rbd bindings import (tests/rigs/ceph.sh pybind).
"""
import os

import pytest

from ceph_rig import SR
from simulator.testkit import cleanup_datapaths, sim_pool, sr_maker


def _need_cluster():
    if not os.environ.get("SRKIT_CEPH_CONF"):
        pytest.skip("no Ceph cluster: run tests/rigs/ceph.sh up DIR and "
                    "eval \"$(tests/rigs/ceph.sh env DIR)\"")
    try:
        import rados  # noqa: F401
        import rbd  # noqa: F401
    except ImportError:
        pytest.skip("python rados/rbd bindings not importable: tests/rigs/ceph.sh pybind")


@pytest.fixture(scope="session")
def ceph_env():
    _need_cluster()
    return {k: os.environ[k] for k in os.environ if k.startswith("SRKIT_CEPH_")}


@pytest.fixture(scope="session")
def cluster(ceph_env):
    """An admin connection: Ceph's own view, for assertions."""
    import rados
    c = rados.Rados(conffile=ceph_env["SRKIT_CEPH_CONF"], conf={"log_to_stderr": "false"})
    c.connect(timeout=10)
    yield c
    c.shutdown()


@pytest.fixture
def device_config(ceph_env):
    return {
        "monitors": ceph_env["SRKIT_CEPH_MONITORS"],
        "user": ceph_env["SRKIT_CEPH_USER"],
        "key": ceph_env["SRKIT_CEPH_KEY"],
        "pool": ceph_env.get("SRKIT_CEPH_POOL", "rbd"),
        "datapath": "fuse",
    }


@pytest.fixture
def pool(tmp_path):
    root = str(tmp_path / "pool")
    with sim_pool(root, hosts=2) as p:
        yield p
    cleanup_datapaths(root, servers=(b"rbd-fuse",))


@pytest.fixture
def make_sr(pool, cluster, device_config):
    with sr_maker(pool, "rbd", device_config, lambda ref, dc: SR(pool, ref, cluster, dc),
                  name_label="ceph", shared=True) as make:
        yield make


@pytest.fixture
def sr(make_sr):
    return make_sr()
