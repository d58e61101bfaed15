"""(b) Lifecycle: SR and VDI operations as xapi drives them, data checked end to end.

Every test is gated on the capabilities the driver advertises; data is written
through the device path ``vdi_attach`` returns and read back the same way.
"""
import pytest

from simulator import XapiError
from simulator.conformance import helpers as h

MiB = h.MiB


def _attached_path(pool, vdi, writable=True, host=None):
    result = pool.vdi_attach(vdi, host=host, writable=writable)
    path = h.device_path(result)
    if path is None:
        pool.vdi_detach(vdi, host=host)
        pytest.skip("vdi_attach returned no local device path (params=%r); data checks "
                    "need one" % result.get("params"))
    return path


def write_vdi(pool, vdi, offset, data, host=None):
    path = _attached_path(pool, vdi, True, host)
    try:
        h.write_at(path, offset, data)
    finally:
        pool.vdi_detach(vdi, host=host)


def read_vdi(pool, vdi, offset, length, writable=False, host=None):
    path = _attached_path(pool, vdi, writable, host)
    try:
        return h.read_at(path, offset, length)
    finally:
        pool.vdi_detach(vdi, host=host)


# --- SR ------------------------------------------------------------------------------------

@pytest.mark.requires("SR_CREATE", "SR_DELETE")
def test_sr_create_attach_update_detach_delete(pool, bench, target, caps):
    sr = bench.make_sr("lifecycle")
    rec = pool.sr_record(sr)
    assert rec["type"] == target.type
    pbds = pool.find("PBD", SR=sr)
    assert pbds and all(pool.record("PBD", p)["currently_attached"] for p in pbds)
    assert "SRmaster" not in pool.record("PBD", pbds[0])["device_config"]
    if "SR_UPDATE" in caps:
        pool.sr_update(sr)
        rec = pool.sr_record(sr)
        size, used = int(rec["physical_size"]), int(rec["physical_utilisation"])
        assert size >= 0 and used >= 0
        if size:
            assert used <= size, "physical_utilisation %d > physical_size %d" % (used, size)
    if "SR_SCAN" in caps:
        pool.sr_scan(sr)
        assert pool.sr_record(sr)["VDIs"] == [], "a new SR must hold no VDI"
    dc = bench.pbd_device_config(sr)
    bench.unplug_all(sr)
    assert not any(pool.record("PBD", p)["currently_attached"] for p in pbds)
    pool.sr_destroy(sr)
    assert sr not in [r for r in pool.db.refs("SR")]
    if "SR_PROBE" in caps:
        assert rec["uuid"] not in pool.sr_probe(target.type, dc), \
            "sr_probe still lists a deleted SR"


@pytest.mark.requires("SR_PROBE")
def test_sr_probe_lists_the_sr(pool, bench, sr, target):
    result = pool.sr_probe(target.type, bench.pbd_device_config(sr))
    assert pool.sr_record(sr)["uuid"] in result


@pytest.mark.requires("SR_UPDATE", "VDI_CREATE", "VDI_DELETE")
def test_sr_update_accounts_virtual_allocation(pool, bench):
    sr = bench.make_sr("allocation")
    pool.sr_update(sr)
    before = int(pool.sr_record(sr)["virtual_allocation"])
    vdi = bench.make_vdi(sr, 4 * MiB)
    pool.sr_update(sr)
    after = int(pool.sr_record(sr)["virtual_allocation"])
    assert after - before >= 4 * MiB, (before, after)
    pool.vdi_destroy(vdi)
    pool.sr_update(sr)
    assert int(pool.sr_record(sr)["virtual_allocation"]) == before


# --- VDI -----------------------------------------------------------------------------------

@pytest.mark.requires("VDI_CREATE", "VDI_DELETE")
def test_vdi_create_and_delete(pool, bench, sr, caps):
    vdi = bench.make_vdi(sr, 3 * MiB + 5, name_label="created", name_description="a disk")
    rec = pool.vdi_record(vdi)
    assert rec["SR"] == sr
    assert rec["name_label"] == "created"
    assert rec["name_description"] == "a disk"
    assert int(rec["virtual_size"]) >= 3 * MiB + 5
    assert rec["location"]
    assert rec["type"] == "user"
    assert rec["read_only"] is False and rec["is_a_snapshot"] is False
    if "VDI_UPDATE" in caps:
        pool.vdi_update(vdi)
    pool.vdi_destroy(vdi)
    assert vdi not in pool.db.refs("VDI")
    if "SR_SCAN" in caps:
        pool.sr_scan(sr)
        assert rec["uuid"] not in [r["uuid"] for r in pool.records("VDI")], \
            "a deleted VDI came back on scan"


@pytest.mark.requires("VDI_CREATE")
@pytest.mark.parametrize("vdi_type", ["user", "system", "ha_statefile", "redo_log"])
def test_vdi_create_keeps_type(pool, bench, sr, vdi_type):
    vdi = bench.make_vdi(sr, MiB, type=vdi_type)
    assert pool.vdi_record(vdi)["type"] == vdi_type
    pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_CREATE", "VDI_ATTACH")
def test_vdi_starts_zeroed(pool, bench, sr):
    vdi = bench.make_vdi(sr, 2 * MiB)
    try:
        data = read_vdi(pool, vdi, 0, 2 * MiB)
        assert len(data) == 2 * MiB
        assert data == bytes(2 * MiB), "a new VDI must read as zeroes"
    finally:
        pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_CREATE", "VDI_ATTACH")
def test_vdi_attach_write_detach_read(pool, bench, sr):
    vdi = bench.make_vdi(sr, 4 * MiB)
    try:
        result = pool.vdi_attach(vdi)
        path = h.device_path(result)
        if path is None:
            pool.vdi_detach(vdi)
            pytest.skip("no local device path")
        assert h.device_size(path) >= 4 * MiB
        data = h.pattern(1)
        h.write_at(path, MiB, data)
        pool.vdi_detach(vdi)
        assert read_vdi(pool, vdi, MiB, len(data)) == data
        assert read_vdi(pool, vdi, 0, MiB) == bytes(MiB)
    finally:
        pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_CREATE", "VDI_ATTACH", "VDI_SNAPSHOT")
def test_snapshot_keeps_point_in_time_data(pool, bench, sr):
    vdi = bench.make_vdi(sr, 4 * MiB, name_label="snapped", name_description="origin")
    before, after = h.pattern(2), h.pattern(3)
    write_vdi(pool, vdi, 0, before)
    snap = pool.vdi_snapshot(vdi)
    write_vdi(pool, vdi, 0, after)
    srec = pool.vdi_record(snap)
    assert srec["is_a_snapshot"] is True
    assert srec["snapshot_of"] == vdi
    assert srec["name_label"] == "snapped"
    assert srec["location"] != pool.vdi_record(vdi)["location"]
    assert int(srec["virtual_size"]) == int(pool.vdi_record(vdi)["virtual_size"])
    assert read_vdi(pool, snap, 0, len(before)) == before, "snapshot lost its data"
    assert read_vdi(pool, vdi, 0, len(after)) == after, "original lost writes"
    assert snap in pool.vdi_record(vdi)["snapshots"]
    pool.vdi_destroy(snap)
    assert read_vdi(pool, vdi, 0, len(after)) == after, "deleting a snapshot hurt its origin"
    pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_CREATE", "VDI_ATTACH", "VDI_CLONE")
def test_clone_is_an_independent_writable_copy(pool, bench, sr):
    vdi = bench.make_vdi(sr, 4 * MiB, name_label="cloned")
    original, changed = h.pattern(4), h.pattern(5)
    write_vdi(pool, vdi, 2 * MiB, original)
    clone = pool.vdi_clone(vdi)
    crec = pool.vdi_record(clone)
    assert crec["is_a_snapshot"] is False
    assert crec["read_only"] is False
    assert crec["location"] != pool.vdi_record(vdi)["location"]
    assert read_vdi(pool, clone, 2 * MiB, len(original)) == original
    write_vdi(pool, clone, 2 * MiB, changed)
    assert read_vdi(pool, clone, 2 * MiB, len(changed)) == changed
    assert read_vdi(pool, vdi, 2 * MiB, len(original)) == original, \
        "writing a clone changed its source"
    pool.vdi_destroy(vdi)
    assert read_vdi(pool, clone, 2 * MiB, len(changed)) == changed, \
        "deleting the source hurt the clone"
    pool.vdi_destroy(clone)


@pytest.mark.requires("VDI_CREATE", "VDI_ATTACH", "VDI_SNAPSHOT", "VDI_CLONE")
def test_clone_of_snapshot_carries_snapshot_data(pool, bench, sr):
    vdi = bench.make_vdi(sr, 2 * MiB)
    data = h.pattern(6)
    write_vdi(pool, vdi, 0, data)
    snap = pool.vdi_snapshot(vdi)
    write_vdi(pool, vdi, 0, h.pattern(7))
    clone = pool.vdi_clone(snap)
    assert read_vdi(pool, clone, 0, len(data)) == data
    for v in (clone, snap, vdi):
        pool.vdi_destroy(v)


@pytest.mark.requires("VDI_CREATE", "VDI_RESIZE")
def test_resize_grows_and_keeps_data(pool, bench, sr, caps):
    vdi = bench.make_vdi(sr, 2 * MiB)
    data = h.pattern(8)
    if "VDI_ATTACH" in caps:
        write_vdi(pool, vdi, MiB, data)
    new_size = pool.vdi_resize(vdi, 6 * MiB)
    assert new_size >= 6 * MiB, "virtual_size after resize is %d" % new_size
    assert int(pool.vdi_record(vdi)["virtual_size"]) == new_size
    if "VDI_ATTACH" in caps:
        path = _attached_path(pool, vdi)
        try:
            assert h.device_size(path) >= 6 * MiB
            assert h.read_at(path, MiB, len(data)) == data
            assert h.read_at(path, 5 * MiB, MiB) == bytes(MiB), "grown area must be zero"
        finally:
            pool.vdi_detach(vdi)
    pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_CREATE", "VDI_UPDATE")
def test_vdi_update_after_rename(pool, bench, sr):
    vdi = bench.make_vdi(sr, MiB, name_label="before")
    pool.db.update("VDI", vdi, name_label="after", name_description="renamed")
    pool.vdi_update(vdi)
    assert pool.vdi_record(vdi)["name_label"] == "after"
    pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_CREATE", "VDI_GENERATE_CONFIG", "VDI_ATTACH")
def test_generate_config_replays_as_static_vdi(pool, bench, sr, target):
    """static-vdis stores the string and runs [driver, config] at boot, with no session."""
    import xmlrpc.client
    vdi = bench.make_vdi(sr, 2 * MiB, type="ha_statefile")
    try:
        config = pool.vdi_generate_config(vdi)
        assert isinstance(config, str) and config
        (params,), method = xmlrpc.client.loads(config)
        assert method == "vdi_attach_from_config"
        assert "session_ref" not in params
        rc, out, err = pool.run_raw(target.type, config)
        reply = h.check_discipline("vdi_attach_from_config", rc, out, err, fault_ok=False)
        h.check_attach("vdi_attach_from_config", reply.value)
        params["command"] = "vdi_detach_from_config"
        detach = xmlrpc.client.dumps((params,), "vdi_detach_from_config")
        rc, out, err = pool.run_raw(target.type, detach)
        h.check_discipline("vdi_detach_from_config", rc, out, err, fault_ok=False)
    finally:
        pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_CREATE", "VDI_ATTACH")
def test_read_only_attach_of_snapshot(pool, bench, sr, caps):
    if "VDI_SNAPSHOT" not in caps:
        pytest.skip("needs VDI_SNAPSHOT")
    vdi = bench.make_vdi(sr, MiB)
    snap = pool.vdi_snapshot(vdi)
    try:
        result = pool.vdi_attach(snap, writable=False)
        h.check_attach("vdi_attach", result)
        pool.vdi_detach(snap)
    finally:
        pool.vdi_destroy(snap)
        pool.vdi_destroy(vdi)


def test_unadvertised_operations_are_refused_by_xapi(pool, bench, sr, caps):
    """What the driver does not advertise, xapi never asks for (gating, §1.4)."""
    vdi = bench.make_vdi(sr, MiB)
    try:
        checked = 0
        for cap, op in (("VDI_SNAPSHOT", pool.vdi_snapshot), ("VDI_CLONE", pool.vdi_clone),
                        ("VDI_RESIZE", lambda v: pool.vdi_resize(v, 2 * MiB))):
            if cap in caps:
                continue
            with pytest.raises(XapiError) as e:
                op(vdi)
            assert e.value.code == "SR_OPERATION_NOT_SUPPORTED"
            checked += 1
        if not checked:
            pytest.skip("driver advertises snapshot, clone and resize")
    finally:
        pool.vdi_destroy(vdi)


# --- several hosts ------------------------------------------------------------------------------

@pytest.mark.requires("VDI_CREATE", "VDI_ATTACH")
def test_data_visible_from_every_host_of_a_shared_sr(pool, bench, sr, target):
    if len(pool.hosts) < 2 or not pool.sr_record(sr)["shared"]:
        pytest.skip("needs --hosts 2 or more and a shared SR")
    vdi = bench.make_vdi(sr, 2 * MiB)
    data = h.pattern(9)
    try:
        write_vdi(pool, vdi, 0, data, host=pool.hosts[0])
        for host in pool.hosts[1:]:
            assert read_vdi(pool, vdi, 0, len(data), host=host) == data
    finally:
        pool.vdi_destroy(vdi)
