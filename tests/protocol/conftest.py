"""Fixtures for the protocol tests (the rig itself is protocol_rig.py)."""
import pytest

from protocol_rig import Local


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    rig = Local(tmp_path_factory.mktemp("local"))
    yield rig
    rig.close()


@pytest.fixture
def fresh(tmp_path):
    """A rig of its own, for tests that break things."""
    rig = Local(tmp_path)
    yield rig
    rig.close()
