"""(e) Scan reconciliation: the backend is the truth, and xapi's view is rebuilt
from it (names, descriptions, snapshot relations, read-only flags)."""
import pytest

from simulator.conformance import helpers as h
from simulator.conformance.plugin import _new_pool

MiB = h.MiB

pytestmark = pytest.mark.requires("SR_SCAN", "VDI_CREATE")


def _by_location(pool, sr):
    return dict((r["location"], r) for r in pool.records("VDI") if r["SR"] == sr)


def _view(pool, sr):
    """What users see of each VDI, keyed by location, relations by location too."""
    recs = _by_location(pool, sr)
    loc_of_ref = dict((pool.by_uuid("VDI", r["uuid"]), loc) for loc, r in recs.items())
    out = {}
    for loc, r in recs.items():
        parent = r["snapshot_of"]
        out[loc] = {
            "name_label": r["name_label"],
            "name_description": r["name_description"],
            "read_only": r["read_only"],
            "is_a_snapshot": r["is_a_snapshot"],
            "snapshot_of": loc_of_ref.get(parent, "") if parent != "OpaqueRef:NULL" else "",
            "virtual_size": int(r["virtual_size"]),
            "type": r["type"],
        }
    return out


def test_forgotten_vdi_comes_back_with_its_name(pool, bench, sr):
    vdi = bench.make_vdi(sr, MiB, name_label="phoenix", name_description="rises again")
    rec = pool.vdi_record(vdi)
    bench.forget_vdi(vdi)
    assert rec["location"] not in _by_location(pool, sr)
    pool.sr_scan(sr)
    back = _by_location(pool, sr).get(rec["location"])
    assert back is not None, "scan did not reintroduce a VDI the backend still holds"
    assert back["name_label"] == "phoenix"
    assert back["name_description"] == "rises again"
    assert int(back["virtual_size"]) == int(rec["virtual_size"])
    pool.vdi_destroy(pool.by_uuid("VDI", back["uuid"]))


def test_scan_sees_renames_made_in_xapi_after_reintroduce(pool, bench, sr, caps):
    """Names changed in xapi (then vdi_update) are what a later scan restores."""
    if "VDI_UPDATE" not in caps:
        pytest.skip("needs VDI_UPDATE")
    vdi = bench.make_vdi(sr, MiB, name_label="old name")
    pool.db.update("VDI", vdi, name_label="new name", name_description="new words")
    pool.vdi_update(vdi)
    location = pool.vdi_record(vdi)["location"]
    bench.forget_vdi(vdi)
    pool.sr_scan(sr)
    back = _by_location(pool, sr)[location]
    assert (back["name_label"], back["name_description"]) == ("new name", "new words")
    pool.vdi_destroy(pool.by_uuid("VDI", back["uuid"]))


def test_reintroduced_sr_gets_every_vdi_back(pool, bench, target, caps):
    sr = bench.make_sr("reintroduce")
    base = bench.make_vdi(sr, 4 * MiB, name_label="base", name_description="the origin")
    ro = bench.make_vdi(sr, MiB, name_label="frozen", name_description="read-only",
                        read_only=True)
    system = bench.make_vdi(sr, MiB, name_label="sys", type="system")
    data = h.pattern(31)
    if "VDI_ATTACH" in caps:
        path = h.device_path(pool.vdi_attach(base))
        if path:
            h.write_at(path, 0, data)
        pool.vdi_detach(base)
    made = [base, ro, system]
    if "VDI_SNAPSHOT" in caps:
        snap = pool.vdi_snapshot(base)
        made.append(snap)
        if "VDI_CLONE" in caps:
            made.append(pool.vdi_clone(snap))
    elif "VDI_CLONE" in caps:
        made.append(pool.vdi_clone(base))
    before = _view(pool, sr)
    base_loc = pool.vdi_record(base)["location"]
    assert len(before) == len(made)
    assert before[pool.vdi_record(ro)["location"]]["read_only"] is True

    sr_rec = pool.sr_record(sr)
    dcs = dict((h_, bench.pbd_device_config(sr, h_)) for h_ in
               [pool.record("PBD", p)["host"] for p in pool.find("PBD", SR=sr)])
    bench.unplug_all(sr)
    pool.sr_forget(sr)
    assert not _by_location(pool, sr)

    sr2 = pool.sr_introduce(sr_rec["uuid"], target.type, name_label=sr_rec["name_label"],
                            shared=sr_rec["shared"])
    bench.srs.append(sr2)
    for host, dc in dcs.items():
        pool.pbd_plug(pool.pbd_create(host, sr2, dc))
    pool.sr_scan(sr2)
    after = _view(pool, sr2)
    assert set(after) == set(before), "scan after re-introduce: missing %s, extra %s" % (
        sorted(set(before) - set(after)), sorted(set(after) - set(before)))
    for loc in before:
        assert after[loc] == before[loc], "VDI at %s came back as %r, was %r" % (
            loc, after[loc], before[loc])
    if "VDI_ATTACH" in caps:
        ref = pool.by_uuid("VDI", _by_location(pool, sr2)[base_loc]["uuid"])
        path = h.device_path(pool.vdi_attach(ref))
        try:
            if path:
                assert h.read_at(path, 0, len(data)) == data
        finally:
            pool.vdi_detach(ref)


@pytest.mark.requires("VDI_DELETE")
def test_vdi_removed_behind_xapis_back_is_forgotten(pool, bench, sr, target, sm_dir,
                                                    tmp_path_factory):
    """A second pool sharing the backend deletes a VDI; our scan must forget it."""
    keep = bench.make_vdi(sr, MiB, name_label="stays")
    gone = bench.make_vdi(sr, MiB, name_label="goes")
    gone_loc = pool.vdi_record(gone)["location"]
    sr_rec = pool.sr_record(sr)
    other = _new_pool(tmp_path_factory.mktemp("other-pool"), target, sm_dir)
    try:
        osr = other.sr_introduce(sr_rec["uuid"], target.type, name_label="intruder")
        pbd = other.pbd_create(other.master, osr, bench.pbd_device_config(sr))
        other.pbd_plug(pbd)
        other.sr_scan(osr)
        victim = [r for r in other.records("VDI") if r["location"] == gone_loc]
        assert victim, "the second pool does not see the VDI"
        other.vdi_destroy(other.by_uuid("VDI", victim[0]["uuid"]))
        other.pbd_unplug(pbd)
        other.sr_forget(osr)
    finally:
        other.close()
    assert gone_loc in _by_location(pool, sr)
    pool.sr_scan(sr)
    locations = _by_location(pool, sr)
    assert gone_loc not in locations, "scan kept a VDI the backend no longer has"
    assert pool.vdi_record(keep)["name_label"] == "stays"
    pool.vdi_destroy(keep)
