"""sm_drivers/RBDSR's metadata against a real Ceph cluster: what sr_scan restores on a
fresh pool, the SR index rebuilt from image metadata, and the extents export reads.
"""
from simulator.testkit import driver_context

MiB = 1024 * 1024


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


# --- export helpers (driver primitives, in process) ---------------------------------------------

def test_extents_and_changed_extents(pool, sr, device_config, tmp_path):
    from drivers.ceph.driver import RBDDriver
    v = pool.vdi_create(sr.ref, 64 * MiB, name_label="x")
    uuid = sr.uuid_of(v)
    sr.write(uuid, 8 * MiB, b"a" * 4096)
    s = pool.vdi_snapshot(v)
    sr.write(uuid, 40 * MiB, b"b" * 4096)
    d = RBDDriver(sr.uuid, dict(device_config, pool=sr.pool_name), driver_context(tmp_path))
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
    from drivers.ceph.driver import RBDDriver
    v = pool.vdi_create(sr.ref, MiB, name_label="last")
    keys = tuple("used.%08d-0000-4000-8000-000000000000" % i for i in range(1500))
    with rados.WriteOpCtx() as op:
        sr.io.set_omap(op, keys, tuple(b"0" for _ in keys))
        sr.io.operate_write_op(op, "srkit.sr")
    d = RBDDriver(sr.uuid, dict(device_config), driver_context(tmp_path))
    assert len(d.index.read()) >= 1500 + 4
    assert sr.uuid_of(v) in d.list()
