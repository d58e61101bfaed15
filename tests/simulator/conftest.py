"""Fixtures for the simulator tests: tiny fake SMAPIv1 drivers written into a
temporary sm_dir. They talk XML-RPC to SRKIT_XAPI_SOCKET with the standard library
only (no XenAPI package) and keep their VDIs in a JSON file in SRKIT_STATE_DIR."""
import pytest

from fake_drivers import ALL_CAPS, FAKE_DRIVER, write_driver


@pytest.fixture
def sm_dir(tmp_path):
    d = tmp_path / "sm"
    d.mkdir()
    write_driver(d, "Fake", FAKE_DRIVER % {"caps": ALL_CAPS})
    return d


@pytest.fixture
def pool(tmp_path, sm_dir):
    from simulator import Pool
    with Pool(tmp_path / "pool", sm_dir=str(sm_dir), hosts=2) as p:
        yield p


@pytest.fixture
def sr(pool, tmp_path):
    return pool.sr_create("fake", {"location": str(tmp_path / "data")}, name_label="sr0",
                          shared=True)
