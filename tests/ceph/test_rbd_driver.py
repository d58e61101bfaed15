"""sm_drivers/RBDSR against a real Ceph cluster, through the simulated pool.

After each driver call the test asks Ceph itself (librbd/librados) what exists:
images, snapshots, parents, image metadata, the SR index, leases, blocklist.
"""
import json
import os
import time

import pytest

from simulator.errors import XapiError

MiB = 1024 * 1024


def backend_code(exc):
    return exc.value.code


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


# --- datapath ------------------------------------------------------------------------------

def _pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def test_attach_write_through_device_read_back_with_librbd(pool, sr):
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="io")
    uuid = sr.uuid_of(v)
    info = pool.vdi_attach(v, writable=True)
    dev = info["params"]
    assert dev.startswith("/dev/loop")
    assert info["xenstore_data"]["vdi-uuid"] == uuid
    data = _pattern(2 * MiB, 3)
    fd = os.open(dev, os.O_RDWR)
    try:
        os.pwrite(fd, data, 1 * MiB)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert sr.read(uuid, 1 * MiB, 2 * MiB) == data
    pool.vdi_detach(v)
    with sr.image(uuid, read_only=True) as img:
        assert list(img.watchers_list()) == []
    assert int(sr.index()["used." + uuid]) >= 2 * MiB


def test_attach_snapshot_read_only(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="s")
    base = sr.uuid_of(v)
    sr.write(base, 0, b"S" * 4096)
    s = pool.vdi_snapshot(v)
    sr.write(base, 0, b"T" * 4096)
    info = pool.vdi_attach(s, writable=False)
    with open(info["params"], "rb") as f:
        assert f.read(4096) == b"S" * 4096
    with open("/sys/block/%s/ro" % os.path.basename(info["params"])) as f:
        assert f.read().strip() == "1"
    assert len(sr.images()) == 2  # the snapshot is exposed through a temporary clone
    pool.vdi_detach(s)
    assert sr.images() == [base]  # which is gone after detach


def test_grow_while_attached(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="online")
    dev = pool.vdi_attach(v, writable=True)["params"]
    name = os.path.basename(dev)

    def dev_size():
        with open("/sys/block/%s/size" % name) as f:
            return int(f.read()) * 512
    assert dev_size() == 4 * MiB
    assert pool.vdi_resize(v, 12 * MiB) == 12 * MiB
    assert dev_size() == 12 * MiB
    fd = os.open(dev, os.O_RDWR)
    try:
        os.pwrite(fd, b"E" * 4096, 12 * MiB - 4096)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert sr.read(sr.uuid_of(v), 12 * MiB - 4096, 4096) == b"E" * 4096
    pool.vdi_detach(v)


# --- multi-host safety ----------------------------------------------------------------------

def test_second_host_activation_fails_then_fencing(pool, sr, device_config, cluster):
    from drivers.ceph import admin
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="shared")
    uuid = sr.uuid_of(v)
    host0, host1 = pool.hosts[0], pool.hosts[1]
    dev0 = pool.vdi_attach(v, host=host0, writable=True)["params"]
    fd = os.open(dev0, os.O_RDWR)
    os.pwrite(fd, b"0" * 4096, 0)
    os.fsync(fd)
    os.close(fd)
    lease = json.loads(sr.io.read("srkit.active." + uuid).decode())
    assert lease["host"] == pool.db.get("host", host0)["uuid"]
    assert lease["clients"], lease
    with pytest.raises(XapiError) as e:
        pool.vdi_attach(v, host=host1, writable=True)
    assert e.value.code == "VDI_IN_USE"
    # read-only elsewhere is fine; the lease is untouched
    assert json.loads(sr.io.read("srkit.active." + uuid).decode()) == lease
    # host0 "dies": the admin fences it
    done = admin.fence(device_config, sr.uuid, uuid, expire=600)
    assert done["blocklisted"] == [c["addr"] for c in lease["clients"]]
    import json as _json
    ret, out, _ = cluster.mon_command(_json.dumps({"prefix": "osd blocklist ls",
                                                   "format": "json"}), b"")
    listed = [b["addr"] for b in _json.JSONDecoder().raw_decode(out.decode() or "[]")[0]]
    assert all(a in listed for a in done["blocklisted"])
    with pytest.raises(Exception):
        sr.io.read("srkit.active." + uuid)
    # host1 may now activate (its attach from the failed try is reused) and write
    for dp in pool.db.find("datapath", VDI=v, host=host1):
        pool.db.delete("datapath", dp)
    dev1 = pool.vdi_attach(v, host=host1, writable=True)["params"]
    fd = os.open(dev1, os.O_RDWR)
    os.pwrite(fd, b"1" * 4096, 0)
    os.fsync(fd)
    os.close(fd)
    assert sr.read(uuid, 0, 4096) == b"1" * 4096
    # the fenced host's datapath can no longer write: its write fails or never completes
    import subprocess
    dd = subprocess.Popen(["dd", "if=/dev/zero", "of=" + dev0, "bs=4096", "count=1",
                           "oflag=direct,sync", "conv=notrunc"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rc = dd.wait(timeout=5)
    except subprocess.TimeoutExpired:
        rc = None
    assert rc != 0
    assert sr.read(uuid, 0, 4096) == b"1" * 4096
    pool.vdi_detach(v, host=host1)
    t = time.time()
    pool.vdi_detach(v, host=host0)  # the fenced datapath is torn down without hanging
    assert time.time() - t < 30
    if rc is None:
        dd.wait(timeout=10)
    assert sr.read(uuid, 0, 4096) == b"1" * 4096
    for a in done["blocklisted"]:
        cluster.mon_command(_json.dumps({"prefix": "osd blocklist", "blocklistop": "rm",
                                         "addr": a}), b"")


def test_deactivate_releases_the_lease(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="l")
    uuid = sr.uuid_of(v)
    pool.vdi_attach(v, host=pool.hosts[0], writable=True)
    pool.vdi_detach(v, host=pool.hosts[0])
    with pytest.raises(Exception):
        sr.io.read("srkit.active." + uuid)
    pool.vdi_attach(v, host=pool.hosts[1], writable=True)
    pool.vdi_detach(v, host=pool.hosts[1])


def test_delete_refused_while_active_elsewhere(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="busy")
    pool.vdi_attach(v, host=pool.hosts[1], writable=True)
    with pytest.raises(XapiError) as e:
        pool.call("vdi_delete", vdi=v)
    assert e.value.code == "VDI_IN_USE"
    assert sr.uuid_of(v) in sr.images()
    pool.vdi_detach(v, host=pool.hosts[1])


# --- metadata survives xapi -----------------------------------------------------------------

def _fresh_pool_scan(tmp_path, sr, device_config):
    from simulator import Pool
    p2 = Pool(str(tmp_path / "pool2"), hosts=1)
    ref = p2.sr_introduce(sr.uuid, "rbd", name_label="adopted", shared=True)
    pbd = p2.pbd_create(p2.master, ref, device_config)
    p2.pbd_plug(pbd)
    p2.sr_scan(ref)
    return p2, ref


def test_scan_on_a_fresh_pool_restores_everything(pool, sr, device_config, tmp_path):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="system disk", name_description="os")
    s = pool.vdi_snapshot(v)
    pool.db.update("VDI", s, name_label="before upgrade")
    pool.vdi_update(s)
    c = pool.vdi_clone(v)
    p2, ref = _fresh_pool_scan(tmp_path, sr, device_config)
    try:
        got = dict((r["uuid"], r) for r in p2.records("VDI"))
        assert set(got) == set(sr.uuid_of(x) for x in (v, s, c))
        assert got[sr.uuid_of(v)]["name_label"] == "system disk"
        assert got[sr.uuid_of(v)]["name_description"] == "os"
        snap = got[sr.uuid_of(s)]
        assert snap["is_a_snapshot"] and snap["name_label"] == "before upgrade"
        assert p2.vdi_record(snap["snapshot_of"])["uuid"] == sr.uuid_of(v)
        assert not got[sr.uuid_of(c)]["is_a_snapshot"]
    finally:
        p2.close()


def test_lost_index_is_rebuilt_from_image_metadata(pool, sr, device_config, tmp_path):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="keep me")
    s = pool.vdi_snapshot(v)
    keys = [k for k in sr.index() if not k.startswith("sr.")]
    import rados
    with rados.WriteOpCtx() as op:
        sr.io.remove_omap_keys(op, tuple(keys))
        sr.io.operate_write_op(op, "srkit.sr")
    p2, ref = _fresh_pool_scan(tmp_path, sr, device_config)
    try:
        got = dict((r["uuid"], r) for r in p2.records("VDI"))
        assert got[sr.uuid_of(v)]["name_label"] == "keep me"
        assert got[sr.uuid_of(s)]["is_a_snapshot"]
        assert "vdi." + sr.uuid_of(v) in sr.index()
    finally:
        p2.close()


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


# --- export helpers (driver primitives, in process) ---------------------------------------------

class _Log(object):
    def info(self, msg):
        pass

    error = info


def test_extents_and_changed_extents(pool, sr, device_config, tmp_path):
    from framework.driver import Context
    from drivers.ceph.driver import RBDDriver
    v = pool.vdi_create(sr.ref, 64 * MiB, name_label="x")
    uuid = sr.uuid_of(v)
    sr.write(uuid, 8 * MiB, b"a" * 4096)
    s = pool.vdi_snapshot(v)
    sr.write(uuid, 40 * MiB, b"b" * 4096)
    d = RBDDriver(sr.uuid, dict(device_config, pool=sr.pool_name), Context(str(tmp_path), _Log(), True))
    ext = d.extents(uuid)
    assert any(o <= 8 * MiB < o + n for o, n in ext)
    assert any(o <= 40 * MiB < o + n for o, n in ext)
    assert sum(n for _, n in ext) < 64 * MiB
    changed = d.changed_extents(uuid, sr.uuid_of(s))
    assert any(o <= 40 * MiB < o + n for o, n in changed)
    assert not any(o <= 8 * MiB < o + n for o, n in changed)


def test_index_larger_than_one_osd_reply_is_read_whole(pool, sr, device_config, tmp_path):
    """The OSD caps an omap reply (1024 entries): list() must page through all of it."""
    import rados
    from framework.driver import Context
    from drivers.ceph.driver import RBDDriver
    v = pool.vdi_create(sr.ref, MiB, name_label="last")
    keys = tuple("used.%08d-0000-4000-8000-000000000000" % i for i in range(1500))
    with rados.WriteOpCtx() as op:
        sr.io.set_omap(op, keys, tuple(b"0" for _ in keys))
        sr.io.operate_write_op(op, "srkit.sr")
    d = RBDDriver(sr.uuid, dict(device_config), Context(str(tmp_path), _Log(), True))
    assert len(d._omap()) >= 1500 + 4
    assert sr.uuid_of(v) in d.list()


def test_snapshot_deleted_while_attached_is_collected_at_detach(pool, sr, device_config):
    """xapi refuses this; the driver still never loses the attach clone's parent."""
    from framework.driver import Context
    from drivers.ceph.driver import RBDDriver
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="v")
    base = sr.uuid_of(v)
    s = pool.vdi_snapshot(v)
    snap = sr.uuid_of(s)
    host1 = pool.hosts[1]
    pool.vdi_attach(s, host=host1, writable=False)
    pool.call("vdi_delete", vdi=s)          # on the master, while attached on host 1
    assert sr.snaps(base) == [snap]          # kept: the attach clone hangs from it
    assert len(sr.images()) == 2
    state = os.path.join(pool.host_dirs(host1)["state"], sr.uuid)
    RBDDriver(sr.uuid, dict(device_config), Context(state, _Log(), False)).detach(snap)
    assert sr.snaps(base) == []
    assert sr.images() == [base]
    for dp in pool.db.find("datapath", VDI=s):
        pool.db.delete("datapath", dp)
