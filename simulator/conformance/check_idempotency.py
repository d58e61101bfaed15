"""(c) Idempotency: xapi may repeat attach, activate, deactivate and detach after a
restart (smapiv1.md §1.7, "Notes on failure handling" FH1); each must succeed."""
import pytest

from simulator.conformance import helpers as h

MiB = h.MiB


@pytest.fixture
def vdi(pool, bench, sr):
    v = bench.make_vdi(sr, 2 * MiB, name_label="idempotent")
    yield v
    if v in pool.db.refs("VDI"):
        for rec in pool.records("datapath"):
            if rec["VDI"] == v:
                pool.vdi_detach(v, host=rec["host"])
        pool.vdi_destroy(v)


@pytest.mark.requires("VDI_ATTACH")
def test_attach_twice_gives_the_same_device(pool, vdi):
    first = pool.vdi_attach(vdi)
    second = pool.vdi_attach(vdi)
    h.check_attach("vdi_attach", second)
    assert first["params"] == second["params"]
    assert first["params_nbd"] == second["params_nbd"]
    pool.vdi_detach(vdi)


@pytest.mark.requires("VDI_ATTACH")
def test_repeated_attach_does_not_leak_a_reference(pool, vdi, caps):
    """After attach, attach, detach the VDI is free again (SMAPIv1 does not count)."""
    pool.vdi_attach(vdi)
    pool.vdi_attach(vdi)
    pool.vdi_detach(vdi)
    data = h.pattern(11)
    second = pool.vdi_attach(vdi)
    path = h.device_path(second)
    if path:
        h.write_at(path, 0, data)
        assert h.read_at(path, 0, len(data)) == data
    pool.vdi_detach(vdi)
    # a leaked attach would make the backend refuse to delete an in-use volume
    pool.call("vdi_delete", vdi=vdi)
    assert vdi not in pool.db.refs("VDI")


@pytest.mark.requires("VDI_ATTACH")
def test_detach_twice(pool, vdi):
    pool.vdi_attach(vdi)
    pool.vdi_detach(vdi)
    pool.vdi_detach(vdi)   # the driver gets vdi_(de)activate/detach again: must be nil
    last = pool.last_call
    assert last.command == "vdi_detach" and last.result is None and last.error is None


@pytest.mark.requires("VDI_ATTACH")
def test_detach_without_attach(pool, vdi):
    pool.call("vdi_detach", vdi=vdi)


@pytest.mark.requires("VDI_ATTACH", "VDI_ACTIVATE", "VDI_DEACTIVATE")
def test_activate_and_deactivate_twice(pool, vdi):
    pool.call("vdi_attach", vdi=vdi, args=["true"])
    pool.call("vdi_activate", vdi=vdi, args=["true"])
    pool.call("vdi_activate", vdi=vdi, args=["true"])
    pool.call("vdi_deactivate", vdi=vdi)
    pool.call("vdi_deactivate", vdi=vdi)
    pool.call("vdi_detach", vdi=vdi)


@pytest.mark.requires("SR_ATTACH")
def test_sr_attach_twice(pool, bench, caps):
    sr = bench.make_sr("attach-twice")
    pool.call("sr_attach", sr=sr)        # already plugged by sr_create
    pool.call("sr_attach", sr=sr)
    if "VDI_CREATE" in caps:
        v = bench.make_vdi(sr, MiB)
        pool.vdi_destroy(v)


@pytest.mark.requires("SR_ATTACH", "SR_DETACH")
def test_sr_detach_twice_then_reattach(pool, bench, caps):
    sr = bench.make_sr("detach-twice")
    v = bench.make_vdi(sr, MiB, name_label="survivor") if "VDI_CREATE" in caps else None
    bench.unplug_all(sr)
    pool.call("sr_detach", sr=sr)        # PBD already unplugged
    for pbd in pool.find("PBD", SR=sr):
        pool.pbd_plug(pbd)
    if v is not None:
        if "SR_SCAN" in caps:
            pool.sr_scan(sr)
        assert pool.vdi_record(v)["name_label"] == "survivor"
        pool.vdi_destroy(v)


@pytest.mark.requires("SR_SCAN")
def test_scan_twice_changes_nothing(pool, bench, sr, caps):
    v = bench.make_vdi(sr, MiB, name_label="scanned") if "VDI_CREATE" in caps else None
    pool.sr_scan(sr)
    first = sorted((r["uuid"], r["location"], r["name_label"]) for r in pool.records("VDI")
                   if r["SR"] == sr)
    pool.sr_scan(sr)
    second = sorted((r["uuid"], r["location"], r["name_label"]) for r in pool.records("VDI")
                    if r["SR"] == sr)
    assert first == second
    if v is not None:
        pool.vdi_destroy(v)
