"""End to end with the real framework and sm_drivers/LocalSR (type `local`)."""
import os

import pytest

from simulator import Pool
from simulator.pool import DEFAULT_SM_DIR

pytestmark = pytest.mark.skipif(not os.path.exists(os.path.join(DEFAULT_SM_DIR, "LocalSR")),
                                reason="sm_drivers/LocalSR not present")


def test_local_lifecycle(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    pool = Pool(tmp_path / "pool", hosts=1)
    assert "local" in [r["type"] for r in pool.sm_list(refresh=True)]
    sr = pool.sr_create("local", {"location": str(data)}, name_label="local sr")
    vdi = pool.vdi_create(sr, 8 << 20, name_label="disk", name_description="d")
    assert pool.vdi_record(vdi)["virtual_size"] == str(8 << 20)
    snap = pool.vdi_snapshot(vdi)
    assert pool.vdi_record(snap)["snapshot_of"] == vdi
    clone = pool.vdi_clone(vdi)
    assert pool.vdi_record(clone)["name_label"] == "disk"
    pool.sr_scan(sr)
    assert set(pool.sr_record(sr)["VDIs"]) >= {vdi, snap, clone}
    for ref in (clone, snap, vdi):
        pool.vdi_destroy(ref)
    pool.sr_scan(sr)
    assert not [v for v in pool.sr_record(sr)["VDIs"] if pool.vdi_record(v)["managed"]]
    for pbd in pool.sr_record(sr)["PBDs"]:
        pool.pbd_unplug(pbd)
    pool.sr_destroy(sr)
    assert pool.records("SR") == []
    # every successful call kept stderr clean
    assert [c.command for c in pool.calls if c.stderr] == []
