"""VDIs of sm_drivers/ZFSVolSR on real OpenZFS, through the simulated pool; after each
call the test reads what ZFS itself reports."""
import os

import pytest

from simulator.errors import XapiError
from simulator.testkit import REPO, read_at, write_at
from zfs_rig import MiB

pytestmark = pytest.mark.zfs


def test_vdi_lifecycle_on_both_apis(pool, make_sr, zfs, api):
    sr = make_sr(api=api)
    v = pool.vdi_create(sr.ref, 10 * MiB + 1, name_label="data disk", name_description="d")
    name = sr.zvol(v)
    row = zfs.rows(sr.dataset)[name]
    # sizes rounded up to volblocksize (16 KiB), thin by default
    assert row["type"] == "volume" and int(row["volsize"]) == 10 * MiB + 16384
    assert row["volblocksize"] == "16384" and row["refreservation"] == "0"
    assert int(pool.vdi_record(v)["virtual_size"]) == 10 * MiB + 16384
    meta, source = zfs.meta(name)
    assert source == "local" and meta["name_label"] == "data disk" and meta["_uuid"] == sr.loc(v)

    path = pool.vdi_attach(v)["params"]
    assert path == "/dev/zvol/" + name and os.path.exists(path)
    write_at(path, MiB, b"one" * 100)
    pool.vdi_detach(v)

    s = pool.vdi_snapshot(v)
    snap = "%s@%s" % (name, sr.loc(s))
    rows = zfs.rows(sr.dataset)
    assert rows[snap]["type"] == "snapshot"
    meta, source = zfs.meta(snap)
    assert source == "local" and meta["is_a_snapshot"] == "true" and meta["snapshot_of"] == sr.loc(v)
    assert pool.vdi_record(s)["read_only"] and pool.vdi_record(s)["is_a_snapshot"]

    c = pool.vdi_clone(s)
    clone = sr.zvol(c)
    assert zfs.rows(sr.dataset)[clone]["origin"] == snap
    meta, source = zfs.meta(clone)
    assert source == "local" and meta["_uuid"] == sr.loc(c) and meta["is_a_snapshot"] == "false"
    cpath = pool.vdi_attach(c)["params"]
    assert read_at(cpath, MiB, 300) == b"one" * 100
    pool.vdi_detach(c)

    assert pool.vdi_resize(v, 20 * MiB) == 20 * MiB
    assert zfs.rows(sr.dataset)[name]["volsize"] == str(20 * MiB)
    with pytest.raises(XapiError) as e:
        pool.vdi_resize(v, 4 * MiB)
    assert e.value.code == "SR_BACKEND_FAILURE_79"

    for ref in (c, s, v):
        pool.vdi_destroy(ref)
    assert zfs.names(sr.dataset) == [sr.dataset]


def test_snapshot_attach_is_read_only_and_holds_the_old_data(pool, make_sr, zfs):
    sr = make_sr()
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="x")
    path = pool.vdi_attach(v)["params"]
    write_at(path, 0, b"A" * 4096)
    s = pool.vdi_snapshot(v)
    write_at(path, 0, b"B" * 4096)
    spath = pool.vdi_attach(s, writable=False)["params"]
    assert spath == "/dev/zvol/%s@%s" % (sr.zvol(v), sr.loc(s))
    assert zfs.get(sr.zvol(v), "snapdev")[0] == "visible"
    assert read_at(spath, 0, 4096) == b"A" * 4096 and read_at(path, 0, 4096) == b"B" * 4096
    with pytest.raises(OSError):
        write_at(spath, 0, b"C")
    pool.vdi_detach(s)
    pool.vdi_detach(v)


def test_clone_of_a_writable_vdi_uses_a_hidden_base_snapshot(pool, make_sr, zfs):
    sr = make_sr()
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="x")
    c = pool.vdi_clone(v)
    base = "%s@base-%s" % (sr.zvol(v), sr.loc(c))
    assert zfs.rows(sr.dataset)[sr.zvol(c)]["origin"] == base
    # the base snapshot is no VDI; it goes with its last clone
    assert len(pool.sr_record(sr.ref)["VDIs"]) == 2
    pool.vdi_destroy(c)
    assert zfs.names(sr.dataset) == [sr.dataset, sr.zvol(v)]


def test_deleting_a_vdi_whose_snapshot_has_clones_loses_nothing(pool, make_sr, zfs):
    sr = make_sr()
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="parent")
    write_at(pool.vdi_attach(v)["params"], 0, b"P" * 512)
    pool.vdi_detach(v)
    s = pool.vdi_snapshot(v)
    c = pool.vdi_clone(s)
    zvol, s_loc = sr.zvol(v), sr.loc(s)
    snap_name = "%s@%s" % (zvol, s_loc)

    pool.vdi_destroy(v)     # deferred: the zvol is retired, its snapshot stays a VDI
    rows = zfs.rows(sr.dataset)
    assert zvol not in rows
    retired = [n for n in rows if "/retired-" in n and "@" not in n]
    assert len(retired) == 1
    assert rows[sr.zvol(c)]["origin"] == "%s@%s" % (retired[0], s_loc)
    pool.sr_scan(sr.ref)
    assert sorted(pool.vdi_record(r)["location"] for r in pool.sr_record(sr.ref)["VDIs"]) == \
        sorted([s_loc, sr.loc(c)])
    assert snap_name not in rows

    pool.vdi_destroy(s)     # the snapshot has a clone: kept under a non-VDI name
    rows = zfs.rows(sr.dataset)
    assert "%s@retired-%s" % (retired[0], s_loc) in rows
    assert read_at(pool.vdi_attach(c)["params"], 0, 512) == b"P" * 512
    pool.vdi_detach(c)

    pool.vdi_destroy(c)     # the last dependant: everything goes
    assert zfs.names(sr.dataset) == [sr.dataset]


def test_revert_to_latest_and_older_keeps_every_snapshot(pool, make_sr, zfs):
    sr = make_sr()
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="x")
    path = pool.vdi_attach(v)["params"]
    write_at(path, 0, b"1" * 512)
    pool.vdi_detach(v)
    s1 = pool.vdi_snapshot(v)
    write_at(path, 0, b"2" * 512)
    s2 = pool.vdi_snapshot(v)
    write_at(path, 0, b"3" * 512)

    pool.vdi_revert(s2)     # the latest: a plain zfs rollback
    assert read_at(path, 0, 512) == b"2" * 512
    assert zfs.rows(sr.dataset)[sr.zvol(v)]["origin"] == "-"

    pool.vdi_revert(s1)     # an older one: switch to a clone, s2 stays
    # at once, through attach: the old zvol's zd node answers to this name until ZFS renames it
    assert read_at(pool.vdi_attach(v)["params"], 0, 512) == b"1" * 512
    pool.vdi_detach(v)
    rows = zfs.rows(sr.dataset)
    assert rows[sr.zvol(v)]["origin"].endswith("@" + sr.loc(s1))
    assert [n for n in rows if n.endswith("@" + sr.loc(s2))]
    meta, source = zfs.meta(sr.zvol(v))
    assert source == "local" and meta["_uuid"] == sr.loc(v) and meta["name_label"] == "x"
    pool.sr_scan(sr.ref)
    assert len(pool.sr_record(sr.ref)["VDIs"]) == 3

    pool.vdi_revert(s2)     # and forward again, to a snapshot of the retired zvol
    assert read_at(pool.vdi_attach(v)["params"], 0, 512) == b"2" * 512
    pool.vdi_detach(v)
    for ref in (s1, s2, v):
        pool.vdi_destroy(ref)
    assert zfs.names(sr.dataset) == [sr.dataset]


def test_scan_on_a_fresh_pool_restores_names_and_snapshot_tree(tmp_path, pool, make_sr, zfs):
    from simulator import Pool
    sr = make_sr()
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="keep me", name_description="desc")
    s = pool.vdi_snapshot(v)
    c = pool.vdi_clone(s)
    pool.vdi_record(c)  # exists
    locs = {sr.loc(v): "keep me", sr.loc(s): "keep me", sr.loc(c): "keep me"}
    with Pool(str(tmp_path / "fresh"), sm_dir=os.path.join(REPO, "sm_drivers")) as fresh:
        ref = fresh.sr_introduce(sr.uuid, "zfsvol", name_label="again")
        pbd = fresh.pbd_create(fresh.master, ref, sr.dc)
        fresh.pbd_plug(pbd)
        fresh.sr_scan(ref)
        recs = dict((fresh.vdi_record(r)["location"], fresh.vdi_record(r))
                    for r in fresh.sr_record(ref)["VDIs"])
        assert sorted(recs) == sorted(locs)
        assert all(recs[loc]["name_label"] == locs[loc] for loc in locs)
        assert recs[sr.loc(s)]["is_a_snapshot"]
        assert fresh.vdi_record(recs[sr.loc(s)]["snapshot_of"])["location"] == sr.loc(v)
        assert recs[sr.loc(v)]["name_description"] == "desc"
        fresh.pbd_unplug(pbd)


def test_thick_provisioning_reserves_the_full_size(pool, make_sr, zfs):
    sr = make_sr(provisioning="thick", volblocksize="65536")
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="thick")
    row = zfs.rows(sr.dataset)[sr.zvol(v)]
    assert row["volblocksize"] == "65536"
    assert int(row["refreservation"]) >= 8 * MiB
    pool.vdi_resize(v, 16 * MiB)
    assert int(zfs.rows(sr.dataset)[sr.zvol(v)]["refreservation"]) >= 16 * MiB
    c = pool.vdi_clone(v)
    assert int(zfs.rows(sr.dataset)[sr.zvol(c)]["refreservation"]) >= 16 * MiB
