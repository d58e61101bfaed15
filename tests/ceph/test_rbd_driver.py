"""sm_drivers/RBDSR against a real Ceph cluster, through the simulated pool: the SR,
its VDIs, snapshots and clones, and the device-config checks.

After each driver call the test asks Ceph itself (librbd/librados) what exists:
images, snapshots, parents, image metadata, the SR index.
"""
import json
import time

import pytest

from simulator.errors import XapiError

MiB = 1024 * 1024


# --- SR --------------------------------------------------------------------------------

def test_sr_create_makes_a_namespace_and_sr_object(sr, cluster):
    import rbd
    root = cluster.open_ioctx(sr.pool_name)
    try:
        assert rbd.RBD().namespace_exists(root, sr.uuid)
    finally:
        root.close()
    index = sr.index()
    assert index["sr.uuid"] == sr.uuid and index["sr.format"] == "1"
    assert sr.images() == []


def test_sr_destroy_removes_the_namespace(pool, make_sr, cluster):
    import rbd
    sr = make_sr()
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="x")
    pool.vdi_snapshot(v)
    with pytest.raises(XapiError):
        pool.sr_destroy(sr.ref)  # still attached (PBDs plugged)
    for pbd in pool.sr_record(sr.ref)["PBDs"]:
        pool.pbd_unplug(pbd)
    with pytest.raises(XapiError) as e:
        pool.sr_destroy(sr.ref)
    assert e.value.code == "SR_NOT_EMPTY"
    for ref in list(pool.sr_record(sr.ref)["VDIs"]):
        pool.vdi_destroy(ref)
    pool.sr_destroy(sr.ref)
    root = cluster.open_ioctx(sr.pool_name)
    try:
        assert not rbd.RBD().namespace_exists(root, sr.uuid)
    finally:
        root.close()


def test_sr_stats_come_from_the_cluster(pool, sr):
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="x")
    sr.write(pool.vdi_record(v)["location"], 0, b"\x01" * (4 * MiB))
    pool.sr_update(sr.ref)
    rec = pool.sr_record(sr.ref)
    assert int(rec["physical_size"]) > int(rec["physical_utilisation"]) > 0
    assert int(rec["virtual_allocation"]) == 8 * MiB


def test_probe_lists_the_sr(pool, sr, device_config):
    xml = pool.sr_probe("rbd", device_config)
    assert "<UUID>%s</UUID>" % sr.uuid in xml


# --- VDIs --------------------------------------------------------------------------------

def test_vdi_create_is_an_image_with_features_and_metadata(pool, sr):
    import rbd
    v = pool.vdi_create(sr.ref, 10 * MiB, name_label="data disk", name_description="d")
    uuid = sr.uuid_of(v)
    assert pool.vdi_record(v)["location"] == uuid
    assert sr.images() == [uuid]
    with sr.image(uuid, read_only=True) as img:
        assert img.size() == 10 * MiB
        f = img.features()
        for bit in (rbd.RBD_FEATURE_LAYERING, rbd.RBD_FEATURE_EXCLUSIVE_LOCK,
                    rbd.RBD_FEATURE_OBJECT_MAP, rbd.RBD_FEATURE_FAST_DIFF):
            assert f & bit
    stored = json.loads(sr.metadata(uuid)["srkit.vdi." + uuid])
    assert stored["meta"]["name_label"] == "data disk"
    assert stored["meta"]["name_description"] == "d"
    assert json.loads(sr.index()["vdi." + uuid]) == stored


def test_vdi_update_rewrites_image_metadata(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="before")
    pool.db.update("VDI", v, name_label="after")
    pool.vdi_update(v)
    uuid = sr.uuid_of(v)
    assert json.loads(sr.metadata(uuid)["srkit.vdi." + uuid])["meta"]["name_label"] == "after"


def test_data_pool_puts_data_elsewhere(pool, make_sr, ceph_env, cluster):
    data_pool = ceph_env.get("SRKIT_CEPH_DATA_POOL")
    if not data_pool:
        pytest.skip("rig has no data pool")
    sr = make_sr(data_pool=data_pool)
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="ec")
    with sr.image(sr.uuid_of(v), read_only=True) as img:
        assert img.data_pool_id() == cluster.pool_lookup(data_pool)


# --- snapshots and clones -----------------------------------------------------------------

def test_snapshot_is_an_rbd_snapshot_exposed_read_only(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="vm disk")
    base = sr.uuid_of(v)
    sr.write(base, 0, b"A" * 4096)
    s = pool.vdi_snapshot(v)
    snap = sr.uuid_of(s)
    rec = pool.vdi_record(s)
    assert rec["is_a_snapshot"] and rec["read_only"] and rec["snapshot_of"] == v
    assert sr.images() == [base]
    assert sr.snaps(base) == [snap]
    sr.write(base, 0, b"B" * 4096)
    assert sr.read(base, 0, 4096, snapshot=snap) == b"A" * 4096
    stored = json.loads(sr.metadata(base)["srkit.vdi." + snap])
    assert stored["kind"] == "snap" and stored["meta"]["snapshot_of"] == base


def test_clone_is_a_cow_child_of_a_protected_snapshot(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="golden")
    base = sr.uuid_of(v)
    sr.write(base, 0, b"G" * 4096)
    c = pool.vdi_clone(v)
    clone = sr.uuid_of(c)
    assert not pool.vdi_record(c)["is_a_snapshot"]
    assert sorted(sr.images()) == sorted([base, clone])
    assert sr.parent(clone) == (base, ".clone-" + clone)
    with sr.image(base, read_only=True) as img:
        assert img.is_protected_snap(".clone-" + clone)
    assert sr.read(clone, 0, 4096) == b"G" * 4096
    # clone of a snapshot VDI hangs directly from that snapshot
    s = pool.vdi_snapshot(v)
    c2 = pool.vdi_clone(s)
    assert sr.parent(sr.uuid_of(c2)) == (base, sr.uuid_of(s))


def test_delete_with_dependants_keeps_them_and_collects_later(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="origin")
    base = sr.uuid_of(v)
    sr.write(base, 0, b"O" * 4096)
    s = pool.vdi_snapshot(v)
    snap = sr.uuid_of(s)
    c = pool.vdi_clone(s)
    clone = sr.uuid_of(c)
    # the origin goes: its image is retained for the snapshot and the clone
    pool.vdi_destroy(v)
    assert base in sr.images()
    assert "srkit.vdi." + base not in sr.metadata(base)
    assert "retained." + base in sr.index()
    assert "vdi." + base not in sr.index()
    assert sr.read(clone, 0, 4096) == b"O" * 4096
    pool.sr_scan(sr.ref)
    assert sorted(r["uuid"] for r in pool.records("VDI")) == sorted([snap, clone])
    # the snapshot goes: the RBD snapshot stays while the clone needs it
    pool.vdi_destroy(s)
    assert sr.snaps(base) == [snap]
    assert sr.read(clone, 0, 4096) == b"O" * 4096
    pool.sr_scan(sr.ref)
    assert [r["uuid"] for r in pool.records("VDI")] == [clone]
    # the last dependant goes: everything is collected
    pool.vdi_destroy(c)
    assert sr.images() == []
    assert not [k for k in sr.index() if not k.startswith("sr.")]


def test_delete_plain_vdi_and_its_clone_base(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="a")
    c = pool.vdi_clone(v)
    base = sr.uuid_of(v)
    assert sorted(sr.images()) == sorted([base, sr.uuid_of(c)])
    pool.vdi_destroy(c)
    assert sr.images() == [base]
    assert sr.snaps(base) == []  # the hidden clone snapshot went with the clone
    pool.vdi_destroy(v)
    assert sr.images() == []


def test_clone_depth_limit_flattens(pool, make_sr):
    sr = make_sr(max_clone_depth="2")
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="d0")
    sr.write(sr.uuid_of(v), 0, b"D" * 4096)
    c1 = pool.vdi_clone(v)
    c2 = pool.vdi_clone(c1)
    assert sr.parent(sr.uuid_of(c2))[0] == sr.uuid_of(c1)
    c3 = pool.vdi_clone(c2)
    c3u = sr.uuid_of(c3)
    assert sr.parent(c3u) is None  # flattened: depth 3 > 2
    assert sr.metadata(c3u)["srkit.depth"] == "0"
    assert sr.read(c3u, 0, 4096) == b"D" * 4096
    # the hidden snapshot c3 was cloned from is gone with the flatten
    assert sr.snaps(sr.uuid_of(c2)) == []


def test_revert_to_any_snapshot(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="r")
    base = sr.uuid_of(v)
    sr.write(base, 0, b"1" * 512)
    s1 = pool.vdi_snapshot(v)
    sr.write(base, 0, b"2" * 512)
    s2 = pool.vdi_snapshot(v)
    sr.write(base, 0, b"3" * 512)
    pool.vdi_revert(s1)
    assert sr.read(base, 0, 512) == b"1" * 512
    pool.vdi_revert(s2)
    assert sr.read(base, 0, 512) == b"2" * 512
    assert sr.snaps(base) == sorted([sr.uuid_of(s1), sr.uuid_of(s2)])


def test_grow_offline_and_refuse_shrink(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="g")
    assert pool.vdi_resize(v, 8 * MiB) == 8 * MiB
    with sr.image(sr.uuid_of(v), read_only=True) as img:
        assert img.size() == 8 * MiB
    with pytest.raises(XapiError) as e:
        pool.vdi_resize(v, 2 * MiB)
    assert e.value.code == "SR_BACKEND_FAILURE_79"
    assert "shrink" in " ".join(e.value.params)
    with sr.image(sr.uuid_of(v), read_only=True) as img:
        assert img.size() == 8 * MiB


# --- configuration and reachability -----------------------------------------------------------

def _create_fails(pool, dc):
    with pytest.raises(XapiError) as e:
        pool.sr_create("rbd", dc, name_label="bad", shared=True)
    return e.value


def test_missing_keys_are_named(pool):
    err = _create_fails(pool, {"pool": "rbd"})
    assert err.code == "SR_BACKEND_FAILURE_115"
    text = " ".join(err.params)
    assert "monitors" in text and "key" in text


def test_invalid_values_are_named(pool, device_config):
    for bad, word in (({"key": "not a key!"}, "key"), ({"datapath": "iscsi"}, "datapath"),
                      ({"pool": "no-such-pool"}, "pool"), ({"conf": "/nonexistent.conf"}, "conf"),
                      ({"key": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}, "key")):
        dc = dict(device_config)
        dc.update(bad)
        err = _create_fails(pool, dc)
        assert err.code == "SR_BACKEND_FAILURE_115", (bad, err)
        assert word in " ".join(err.params), (bad, err)


def test_key_from_an_xapi_secret(pool, device_config, make_sr):
    dc = dict(device_config)
    secret = pool.secret_create(dc.pop("key"))
    dc["key_secret"] = secret
    sr = make_sr(**dc)
    v = pool.vdi_create(sr.ref, MiB, name_label="secret")
    assert sr.uuid_of(v) in sr.images()


def test_unreachable_monitors_fail_fast_with_47(pool, device_config):
    dc = dict(device_config, monitors="127.0.0.1:1", connect_timeout="3")
    t = time.time()
    err = _create_fails(pool, dc)
    elapsed = time.time() - t
    assert err.code == "SR_BACKEND_FAILURE_47", err
    assert elapsed < 8, elapsed
