"""Fixtures for the RBD driver tests: a real Ceph cluster (tests/rigs/ceph.sh up),
a simulated pool running sm_drivers/RBDSR, and librbd handles to check what
Ceph itself reports after each driver call. No mocks.

Skips cleanly unless SRKIT_CEPH_CONF is set (eval "$(tests/rigs/ceph.sh env DIR)")
and the rados/rbd bindings import (tests/rigs/ceph.sh pybind).
"""
import os

import pytest

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


class SR(object):
    """An rbd SR of the simulated pool plus Ceph-side handles on its namespace."""

    def __init__(self, pool, ref, cluster, device_config):
        self.pool, self.ref, self.cluster = pool, ref, cluster
        self.device_config = device_config
        self.uuid = pool.sr_record(ref)["uuid"]
        self.pool_name = device_config.get("pool", "rbd")
        self.namespace = device_config.get("namespace") or self.uuid
        self.io = cluster.open_ioctx(self.pool_name)
        self.io.set_namespace(self.namespace)

    # --- Ceph's view -------------------------------------------------------------
    def images(self):
        import rbd
        return sorted(rbd.RBD().list(self.io))

    def image(self, name, **kw):
        import rbd
        return rbd.Image(self.io, name, **kw)

    def snaps(self, name):
        with self.image(name, read_only=True) as img:
            return sorted(s["name"] for s in img.list_snaps())

    def metadata(self, name):
        with self.image(name, read_only=True) as img:
            return dict(img.metadata_list())

    def parent(self, name):
        import rbd
        with self.image(name, read_only=True) as img:
            try:
                spec = img.get_parent_image_spec()
            except rbd.ImageNotFound:
                return None
            return spec["image_name"], spec["snap_name"]

    def read(self, name, offset, length, snapshot=None):
        with self.image(name, read_only=True, snapshot=snapshot) as img:
            return img.read(offset, length)

    def write(self, name, offset, data):
        with self.image(name) as img:
            img.write(data, offset)
            img.flush()

    def index(self):
        import rados
        with rados.ReadOpCtx() as op:
            it, _ = self.io.get_omap_vals(op, "", "", 100000)
            self.io.operate_read_op(op, "srkit.sr")
            return {k: (v or b'').decode() for k, v in it}

    # --- xapi's view -------------------------------------------------------------
    def vdi(self, ref):
        return self.pool.vdi_record(ref)

    def uuid_of(self, ref):
        return self.pool.vdi_record(ref)["uuid"]

    def purge(self):
        """Remove whatever a test left in the namespace (admin, Ceph side)."""
        import rbd
        from namespace_cleanup import empty_namespace
        empty_namespace(self.io, threads=1)
        if self.namespace == self.uuid:
            root = self.cluster.open_ioctx(self.pool_name)
            try:
                rbd.RBD().namespace_remove(root, self.namespace)
            except rbd.Error:
                pass
            root.close()
        self.io.close()


@pytest.fixture
def make_sr(pool, cluster, device_config):
    with sr_maker(pool, "rbd", device_config, lambda ref, dc: SR(pool, ref, cluster, dc),
                  name_label="ceph", shared=True) as make:
        yield make


@pytest.fixture
def sr(make_sr):
    return make_sr()
