"""Fixtures for the S3 driver tests: a real S3 server (tests/rigs/s3.sh up), a simulated
two-host pool running sm_drivers/S3SR, and a boto3 client to check what the bucket
itself holds after each driver call. No mocks.

Skips cleanly unless SRKIT_S3_ENDPOINT is set (eval "$(tests/rigs/s3.sh env DIR)").

Two servers: SeaweedFS (tests/rigs/s3.sh, SRKIT_S3_*) for every test, and radosgw
(tests/rigs/rgw.sh, SRKIT_RGW_*) for the tests marked ``s3_servers`` (layout and
lease): those run once per server, and the radosgw one skips when its rig is not up.
"""
import os

import pytest

from s3_rig import CHUNK, SR, make_admin
from simulator.testkit import cleanup_datapaths, sim_pool, sr_maker


# server name -> (its rig, the prefix of the variables that rig's `env` exports)
SERVERS = {"seaweedfs": ("s3", "SRKIT_S3_"), "radosgw": ("rgw", "SRKIT_RGW_")}


def pytest_configure(config):
    config.addinivalue_line("markers", "s3_servers: run once per S3 server (SeaweedFS and "
                            "radosgw); the radosgw run skips unless tests/rigs/rgw.sh is up")


def pytest_generate_tests(metafunc):
    if metafunc.definition.get_closest_marker("s3_servers") and \
            "s3_server" in metafunc.fixturenames:
        metafunc.parametrize("s3_server", sorted(SERVERS, reverse=True))


@pytest.fixture
def s3_server():
    """The server a test runs on (parametrized for tests marked ``s3_servers``)."""
    return "seaweedfs"


def _need_server(name):
    rig, prefix = SERVERS[name]
    if not os.environ.get(prefix + "ENDPOINT"):
        pytest.skip("no %s: run tests/rigs/%s.sh up DIR and eval \"$(tests/rigs/%s.sh env DIR)\""
                    % (name, rig, rig))
    try:
        import boto3  # noqa: F401
        import zstandard  # noqa: F401
    except ImportError:
        pytest.skip("boto3/zstandard not importable by the test python: tests/rigs/s3.sh install")


@pytest.fixture
def s3_env(s3_server):
    """The server's SRKIT_<RIG>_* variables, always under SRKIT_S3_* names."""
    _need_server(s3_server)
    prefix = SERVERS[s3_server][1]
    return dict(("SRKIT_S3_" + k[len(prefix):], v) for k, v in os.environ.items()
                if k.startswith(prefix))


_admins = {}


@pytest.fixture
def admin(s3_env):
    """The bucket's own view, for assertions (one client per server)."""
    key = (s3_env["SRKIT_S3_ENDPOINT"], s3_env["SRKIT_S3_ACCESS_KEY"])
    if key not in _admins:
        _admins[key] = make_admin(s3_env["SRKIT_S3_ENDPOINT"], s3_env["SRKIT_S3_ACCESS_KEY"],
                                  s3_env["SRKIT_S3_SECRET_KEY"])
    return _admins[key]


@pytest.fixture
def device_config(s3_env, tmp_path):
    return {
        "endpoint": s3_env["SRKIT_S3_ENDPOINT"],
        "bucket": s3_env["SRKIT_S3_BUCKET"],
        "access_key": s3_env["SRKIT_S3_ACCESS_KEY"],
        "secret_key": s3_env["SRKIT_S3_SECRET_KEY"],
        "prefix": "t-%s/" % os.urandom(4).hex(),
        "cache_dir": str(tmp_path / "cache"),
        "chunk_size": str(CHUNK),
    }


@pytest.fixture
def pool(tmp_path):
    with sim_pool(str(tmp_path / "pool"), hosts=2) as p:
        yield p
    cleanup_datapaths(str(tmp_path), servers=(b"nbd",))


@pytest.fixture
def make_sr(pool, admin, device_config):
    with sr_maker(pool, "s3", device_config, lambda ref, dc: SR(pool, ref, admin, dc),
                  name_label="s3", shared=True) as make:
        yield make


@pytest.fixture
def sr(make_sr):
    return make_sr()
