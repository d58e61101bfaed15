"""Fixtures for the Gluster driver tests: a real glusterd (tests/rigs/gluster.sh up),
a simulated two-host pool running sm_drivers/GlusterSR, and Gluster's own view to
assert against: the brick directories (files, xattrs, allocation) and the CLI.

Skips cleanly unless SRKIT_GLUSTER_DIR is set (eval "$(tests/rigs/gluster.sh env DIR)").
"""
import os

import pytest

from gluster_rig import SR
from simulator.testkit import cleanup_datapaths, detach_all, sim_pool


@pytest.fixture(scope="session")
def gluster_env():
    if not os.environ.get("SRKIT_GLUSTER_DIR"):
        pytest.skip("no glusterd: run tests/rigs/gluster.sh up DIR and "
                    "eval \"$(tests/rigs/gluster.sh env DIR)\"")
    return {k: os.environ[k] for k in os.environ if k.startswith("SRKIT_GLUSTER_")}


@pytest.fixture
def pool(tmp_path):
    root = str(tmp_path / "pool")
    with sim_pool(root, hosts=2, unplug=True) as p:
        yield p
    cleanup_datapaths(root)


@pytest.fixture
def device_config(gluster_env):
    return {"server": "%s:/%s" % (gluster_env["SRKIT_GLUSTER_HOST"],
                                  gluster_env["SRKIT_GLUSTER_VOLUME"]),
            "mount_timeout": "20"}


@pytest.fixture
def make_sr(pool, gluster_env, device_config):
    made = []

    def make(volume=None, **overrides):
        volume = volume or gluster_env["SRKIT_GLUSTER_VOLUME"]
        dc = dict(device_config, server="%s:/%s" % (gluster_env["SRKIT_GLUSTER_HOST"], volume))
        dc.update(overrides)
        ref = pool.sr_create("gluster", dc, name_label="gluster", shared=True)
        bricks = gluster_env["SRKIT_GLUSTER_BRICKS"].split(":") \
            if volume == gluster_env["SRKIT_GLUSTER_VOLUME"] \
            else [gluster_env["SRKIT_GLUSTER_XFS_BRICK"]]
        sr = SR(pool, ref, gluster_env, volume, bricks)
        made.append(sr)
        return sr
    yield make
    detach_all(pool, unplug=True)
    for sr in made:
        sr.purge()


@pytest.fixture
def sr(make_sr):
    return make_sr()
