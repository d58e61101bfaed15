"""The gluster driver on a real glusterd: every assertion reads Gluster's own view
(brick files, their xattrs and allocation, /proc/mounts), not the driver's."""
import os
import subprocess
import time

import pytest

from simulator.errors import XapiError

from gluster_rig import META_XATTR, mounts_at
from simulator.testkit import driver_context, read_at, write_at

MiB = 1024 * 1024


def allocated(path):
    return os.stat(path).st_blocks * 512


def fault_code(excinfo):
    return excinfo.value.code


# --- layout on the volume ------------------------------------------------------------

def test_create_makes_a_sparse_file_with_xattr_metadata_on_every_brick(pool, sr):
    vdi = pool.vdi_create(sr.ref, 256 * MiB, name_label="disk one", name_description="d1")
    uuid = sr.uuid_of(vdi)
    for brick in range(2):
        path = sr.brick_file(uuid, brick)
        assert os.stat(path).st_size == 256 * MiB
        assert allocated(path) < MiB, "the brick file is not sparse"
        meta = sr.brick_meta(uuid, brick)
        assert meta["name_label"] == "disk one" and meta["name_description"] == "d1"
    # the SR is one directory named by its uuid, holding a marker and the VDI only
    names = sorted(os.listdir(sr.brick_dirs()[0]))
    assert names == [".srkit-sr", uuid + ".raw"], names


def test_data_written_through_the_device_lands_in_the_brick_files(pool, sr):
    vdi = pool.vdi_create(sr.ref, 64 * MiB, name_label="d")
    uuid = sr.uuid_of(vdi)
    dev = pool.vdi_attach(vdi)["params"]
    assert dev.startswith("/dev/loop")
    payload = os.urandom(MiB)
    write_at(dev, 8 * MiB, payload)
    for brick in range(2):
        assert read_at(sr.brick_file(uuid, brick), 8 * MiB, MiB) == payload
        assert MiB <= allocated(sr.brick_file(uuid, brick)) < 3 * MiB
    pool.vdi_detach(vdi)


def test_snapshot_clone_revert_keep_data_holes_and_tree(pool, sr):
    vdi = pool.vdi_create(sr.ref, 64 * MiB, name_label="base")
    uuid = sr.uuid_of(vdi)
    first = os.urandom(MiB)
    write_at(sr.mount_file(uuid), 4 * MiB, first)
    snap = pool.vdi_snapshot(vdi)
    snap_uuid = sr.uuid_of(snap)
    smeta = sr.brick_meta(snap_uuid)
    assert smeta["is_a_snapshot"] == "true" and smeta["snapshot_of"] == uuid
    assert smeta["read_only"] == "true"
    # holes stay holes on the brick: only the written MiB is allocated in the copy
    assert MiB <= allocated(sr.brick_file(snap_uuid)) < 3 * MiB
    assert read_at(sr.brick_file(snap_uuid), 4 * MiB, MiB) == first
    write_at(sr.mount_file(uuid), 4 * MiB, b"\xff" * MiB)
    clone = pool.vdi_clone(snap)
    assert read_at(sr.brick_file(sr.uuid_of(clone)), 4 * MiB, MiB) == first
    assert sr.brick_meta(sr.uuid_of(clone))["is_a_snapshot"] == "false"
    pool.vdi_revert(snap)
    for brick in range(2):
        assert read_at(sr.brick_file(uuid, brick), 4 * MiB, MiB) == first
    # revert swaps the data, never the VDI's own identity and names
    assert sr.brick_meta(uuid)["name_label"] == "base"
    assert sr.brick_meta(uuid)["is_a_snapshot"] == "false"


def test_resize_grows_online_and_refuses_to_shrink(pool, sr):
    vdi = pool.vdi_create(sr.ref, 16 * MiB, name_label="r")
    uuid = sr.uuid_of(vdi)
    dev = pool.vdi_attach(vdi)["params"]
    write_at(dev, 0, b"keep" * 1024)
    assert pool.vdi_resize(vdi, 48 * MiB) == 48 * MiB
    size = int(subprocess.run(["blockdev", "--getsize64", dev], capture_output=True,
                              text=True).stdout)
    assert size == 48 * MiB, "the attached device did not grow online"
    assert os.stat(sr.brick_file(uuid, 1)).st_size == 48 * MiB
    with pytest.raises(XapiError) as e:
        pool.vdi_resize(vdi, 8 * MiB)
    assert fault_code(e) == "SR_BACKEND_FAILURE_79"
    assert read_at(dev, 0, 4096) == b"keep" * 1024
    pool.vdi_detach(vdi)


def test_extents_follow_seek_data_on_the_mount(pool, sr):
    from drivers.gluster.driver import GlusterDriver
    vdi = pool.vdi_create(sr.ref, 64 * MiB, name_label="x")
    uuid = sr.uuid_of(vdi)
    write_at(sr.mount_file(uuid), 10 * MiB, b"a" * MiB)
    write_at(sr.mount_file(uuid), 40 * MiB, b"b" * (2 * MiB))

    state = os.path.dirname(sr.mountpoint())
    drv = GlusterDriver(sr.uuid, {"server": pool.db.get("PBD", pool.db.get(
        "SR", sr.ref)["PBDs"][0])["device_config"]["server"]}, driver_context(state))
    assert drv.extents(uuid) == [(10 * MiB, MiB), (40 * MiB, 2 * MiB)]


def test_scan_on_a_fresh_pool_restores_names_and_snapshot_tree(pool, sr, tmp_path):
    from simulator import Pool
    vdi = pool.vdi_create(sr.ref, 8 * MiB, name_label="keep me", name_description="desc")
    snap = pool.vdi_snapshot(vdi)
    uuid, snap_uuid = sr.uuid_of(vdi), sr.uuid_of(snap)
    dc = dict(pool.db.get("PBD", pool.db.get("SR", sr.ref)["PBDs"][0])["device_config"])
    with Pool(str(tmp_path / "fresh"), sm_dir=pool.config["sm_dir"], hosts=1) as fresh:
        ref = fresh.sr_introduce(sr.uuid, "gluster", name_label="again", shared=True)
        pbd = fresh.pbd_create(fresh.master, ref, dc)
        fresh.pbd_plug(pbd)
        try:
            fresh.sr_scan(ref)
            recs = {r["uuid"]: r for r in (fresh.vdi_record(v) for v in
                                           fresh.db.get("SR", ref)["VDIs"])}
            assert recs[uuid]["name_label"] == "keep me"
            assert recs[uuid]["name_description"] == "desc"
            assert recs[snap_uuid]["is_a_snapshot"]
            assert fresh.vdi_record(recs[snap_uuid]["snapshot_of"])["uuid"] == uuid
        finally:
            fresh.pbd_unplug(pbd)


# --- device-config and reachability ----------------------------------------------------

@pytest.mark.parametrize("key,value", [
    ("server", "no-volume-here"), ("server", "127.0.0.1:volume"), ("server", ":/vol"),
    ("server", "bad host:/vol"), ("backupservers", "a::b"), ("mount_timeout", "0"),
    ("fetchattempts", "many"),
])
def test_bad_device_config_is_115_naming_the_key(pool, gluster_env, key, value):
    dc = {"server": "127.0.0.1:/" + gluster_env["SRKIT_GLUSTER_VOLUME"], key: value}
    with pytest.raises(XapiError) as e:
        pool.sr_create("gluster", dc, shared=True)
    assert fault_code(e) == "SR_BACKEND_FAILURE_115"
    assert key in e.value.params[1]


def test_missing_server_is_115(pool):
    with pytest.raises(XapiError) as e:
        pool.sr_create("gluster", {}, shared=True)
    assert fault_code(e) == "SR_BACKEND_FAILURE_115" and "server" in e.value.params[1]


@pytest.mark.parametrize("server", ["127.0.0.2:/srkit-rep", "192.0.2.1:/srkit-rep"])
def test_unreachable_server_is_47_within_bounded_time(pool, server):
    start = time.monotonic()
    with pytest.raises(XapiError) as e:
        pool.sr_create("gluster", {"server": server, "mount_timeout": "10"}, shared=True)
    assert fault_code(e) == "SR_BACKEND_FAILURE_47"
    assert time.monotonic() - start < 20


def test_unknown_volume_is_47_not_a_hang(pool):
    start = time.monotonic()
    with pytest.raises(XapiError) as e:
        pool.sr_create("gluster", {"server": "127.0.0.1:/no-such-volume",
                                   "mount_timeout": "10"}, shared=True)
    assert fault_code(e) == "SR_BACKEND_FAILURE_47"
    assert time.monotonic() - start < 25


def test_backup_volfile_server_is_used_when_the_first_is_down(make_sr, pool, gluster_env):
    # 127.0.0.2 has no glusterd (the rig binds 127.0.0.1 only): the mount must use the backup
    sr = make_sr(server="127.0.0.2:/" + gluster_env["SRKIT_GLUSTER_VOLUME"],
                 backupservers="127.0.0.1")
    for host in pool.hosts:
        mounted = mounts_at(sr.mountpoint(host))
        assert len(mounted) == 1 and mounted[0][2] == "fuse.glusterfs"
    vdi = pool.vdi_create(sr.ref, MiB, name_label="via backup")
    assert os.path.exists(sr.brick_file(sr.uuid_of(vdi)))


# --- mounts: one per host, idempotent, a stale one replaced ------------------------------

def test_each_host_mounts_once_and_detach_unmounts(pool, sr):
    for host in pool.hosts:
        assert len(mounts_at(sr.mountpoint(host))) == 1
    pbds = pool.db.get("SR", sr.ref)["PBDs"]
    # a second sr_attach (xapi retrying, a crashed plug) reuses the mount
    pool.call("sr_attach", host=pool.master, sr=sr.ref)
    assert len(mounts_at(sr.mountpoint())) == 1
    for pbd in pbds:
        pool.pbd_unplug(pbd)
    for host in pool.hosts:
        assert mounts_at(sr.mountpoint(host)) == []
    pool.call("sr_detach", host=pool.master, sr=sr.ref)   # idempotent
    for pbd in pbds:
        pool.pbd_plug(pbd)
    assert all(len(mounts_at(sr.mountpoint(h))) == 1 for h in pool.hosts)


def test_a_mount_whose_client_died_is_replaced_not_stacked(pool, sr):
    from drivers.gluster.mount import _client_pids
    mp = sr.mountpoint()
    pids = _client_pids(mp)
    assert len(pids) == 1
    os.kill(pids[0], 9)   # the glusterfs client dies: the mount stays, ENOTCONN
    wait_until_gone = time.time() + 10
    while os.path.exists("/proc/%d" % pids[0]) and time.time() < wait_until_gone:
        time.sleep(0.1)
    assert len(mounts_at(mp)) == 1
    with pytest.raises(OSError):
        os.statvfs(mp)
    pool.call("sr_attach", host=pool.master, sr=sr.ref)
    assert len(mounts_at(mp)) == 1
    os.statvfs(mp)
    vdi = pool.vdi_create(sr.ref, MiB, name_label="after remount")
    assert os.path.exists(sr.brick_file(sr.uuid_of(vdi)))


def test_sr_detach_refuses_while_a_vdi_is_attached(pool, sr):
    vdi = pool.vdi_create(sr.ref, MiB, name_label="busy")
    pool.vdi_attach(vdi)
    with pytest.raises(XapiError) as e:
        pool.call("sr_detach", host=pool.master, sr=sr.ref)
    assert fault_code(e) in ("SR_BACKEND_FAILURE_16", "SR_DEVICE_IN_USE")
    assert len(mounts_at(sr.mountpoint())) == 1
    pool.vdi_detach(vdi)


# --- single writer -------------------------------------------------------------------------

def test_a_vdi_is_writable_on_one_host_at_a_time_and_fence_frees_it(pool, sr):
    vdi = pool.vdi_create(sr.ref, MiB, name_label="one writer")
    uuid = sr.uuid_of(vdi)
    h0, h1 = pool.hosts
    pool.vdi_attach(vdi, host=h0)
    lease_file = os.path.join(sr.brick_dirs()[0], ".lease." + uuid)
    assert os.path.exists(lease_file)
    with pytest.raises(XapiError) as e:
        pool.vdi_attach(vdi, host=h1)
    assert e.value.code in ("VDI_IN_USE", "SR_BACKEND_FAILURE_24")
    pool.call("vdi_detach", host=h1, vdi=vdi)
    # the holder "dies": the admin fences it, then the other host may write
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    dc = pool.db.get("PBD", pool.db.get("SR", sr.ref)["PBDs"][0])["device_config"]
    out = subprocess.run(["/usr/bin/python3", "-m", "drivers.gluster.admin",
                          "--server", dc["server"], "fence", sr.uuid, uuid],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert not os.path.exists(lease_file)
    pool.vdi_attach(vdi, host=h1)
    assert os.path.exists(lease_file)
    pool.vdi_detach(vdi, host=h1)
    assert not os.path.exists(lease_file)
    for dp in pool.db.find("datapath", VDI=vdi, host=h0):
        pool.db.delete("datapath", dp)
    pool.call("vdi_detach", host=h0, vdi=vdi)


def test_delete_of_a_vdi_active_elsewhere_is_refused(pool, sr):
    vdi = pool.vdi_create(sr.ref, MiB, name_label="active")
    h0, h1 = pool.hosts
    pool.vdi_attach(vdi, host=h1)
    with pytest.raises(XapiError) as e:
        pool.call("vdi_delete", host=h0, vdi=vdi)
    assert e.value.code in ("VDI_IN_USE", "SR_BACKEND_FAILURE_24")
    assert os.path.exists(sr.brick_file(sr.uuid_of(vdi)))
    pool.vdi_detach(vdi, host=h1)


def test_delete_right_after_the_other_host_let_go_is_not_refused(pool, sr):
    """Issue 16 (the two-hosts load): a VDI deactivated on host 1 and deleted at once on
    the master was refused with VDI_IN_USE, because the master's FUSE client still
    served the removed lease file from its caches (~1 s)."""
    vdi = pool.vdi_create(sr.ref, MiB, name_label="let go")
    uuid = sr.uuid_of(vdi)
    h0, h1 = pool.hosts
    pool.vdi_attach(vdi, host=h1)
    with pytest.raises(XapiError):   # the master's client has now seen the lease
        pool.call("vdi_delete", host=h0, vdi=vdi)
    pool.vdi_detach(vdi, host=h1)
    pool.call("vdi_delete", host=h0, vdi=vdi)
    assert not os.path.exists(sr.brick_file(uuid))


# --- probe ----------------------------------------------------------------------------------

def test_probe_lists_sr_directories_with_their_sizes(pool, sr, gluster_env):
    vdi = pool.vdi_create(sr.ref, 16 * MiB, name_label="p")
    write_at(sr.mount_file(sr.uuid_of(vdi)), 0, os.urandom(2 * MiB))
    xml = pool.sr_probe("gluster", {"server": "127.0.0.1:/" + gluster_env["SRKIT_GLUSTER_VOLUME"]})
    import xml.etree.ElementTree as ET
    found = {e.findtext("UUID"): int(e.findtext("Size")) for e in ET.fromstring(xml).iter("SR")}
    assert sr.uuid in found
    assert 2 * MiB <= found[sr.uuid] < 4 * MiB
    assert not [m for m in open("/proc/mounts") if "probe-" in m]


# --- crash safety ------------------------------------------------------------------------------

def test_a_snapshot_killed_after_the_copy_leaves_no_vdi_and_is_collected(pool, sr):
    vdi = pool.vdi_create(sr.ref, 8 * MiB, name_label="crash")
    uuid = sr.uuid_of(vdi)
    write_at(sr.mount_file(uuid), 0, b"z" * MiB)
    pool.config["extra_env"] = {"SRKIT_CRASH_AT": "gluster.snapshot.after-copy"}
    try:
        with pytest.raises(XapiError):
            pool.vdi_snapshot(vdi)
    finally:
        pool.config["extra_env"] = {}
    # the copy is on the bricks, without a record: scratch, not a VDI
    staged = [n for n in os.listdir(sr.brick_dirs()[0]) if n.endswith(".raw") and uuid not in n]
    assert len(staged) == 1
    assert META_XATTR not in os.listxattr(os.path.join(sr.brick_dirs()[0], staged[0]))
    pool.sr_scan(sr.ref)
    assert [sr.uuid_of(v) for v in pool.db.get("SR", sr.ref)["VDIs"]] == [uuid]
    # younger than the grace period: left alone (another host could be building it)
    assert os.path.exists(os.path.join(sr.brick_dirs()[0], staged[0]))
    old = time.time() - 7200
    os.utime(os.path.join(os.path.dirname(sr.mount_file(uuid)), staged[0]), (old, old))
    pool.sr_scan(sr.ref)
    for d in sr.brick_dirs():
        assert sorted(os.listdir(d)) == [".srkit-sr", uuid + ".raw"]


# --- server-side copies ------------------------------------------------------------------------

def _shared_bytes(path):
    """Bytes in extents XFS marks shared (FIEMAP_EXTENT_SHARED): a reflink."""
    out = subprocess.run(["xfs_io", "-r", "-c", "fiemap -v", path], capture_output=True,
                         text=True).stdout
    shared = 0
    for line in out.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 5 and parts[2] != "hole" and int(parts[4], 16) & 0x2000:
            shared += int(parts[3]) * 512
    return shared


def test_snapshot_on_an_xfs_brick_is_a_reflink_made_by_the_brick(make_sr, pool):
    xsr = make_sr(volume=os.environ["SRKIT_GLUSTER_XFS_VOLUME"], server_copy="reflink")
    vdi = pool.vdi_create(xsr.ref, 64 * MiB, name_label="reflinked")
    uuid = xsr.uuid_of(vdi)
    payload = os.urandom(8 * MiB)
    write_at(xsr.mount_file(uuid), 16 * MiB, payload)
    snap = pool.vdi_snapshot(vdi)
    copy = xsr.brick_file(xsr.uuid_of(snap))
    assert read_at(copy, 16 * MiB, 8 * MiB) == payload
    assert _shared_bytes(copy) >= 8 * MiB, "the snapshot does not share extents on the brick"
    assert allocated(copy) < 10 * MiB   # holes stay holes
    log = open(os.path.join(pool.path, "SMlog")).read()
    assert "snapshot of %s to %s by server-copy" % (uuid, xsr.uuid_of(snap)) in log
    # the data is independent all the same: rewriting the source leaves the snapshot alone
    write_at(xsr.mount_file(uuid), 16 * MiB, b"\0" * MiB)
    assert read_at(copy, 16 * MiB, 8 * MiB) == payload


def test_server_copy_is_never_used_on_a_replicated_volume(make_sr, pool):
    # Gluster 10.3 fills a server-side copy with zeros on replica volumes: the driver
    # must see the replication (pathinfo) and copy through the mount
    sr2 = make_sr(server_copy="reflink")
    vdi = pool.vdi_create(sr2.ref, 32 * MiB, name_label="replicated")
    write_at(sr2.mount_file(sr2.uuid_of(vdi)), 20 * MiB, b"q" * MiB)
    snap = pool.vdi_snapshot(vdi)
    for brick in range(2):
        assert read_at(sr2.brick_file(sr2.uuid_of(snap), brick), 20 * MiB, MiB) == b"q" * MiB
    log = open(os.path.join(pool.path, "SMlog")).read()
    assert "to %s by server-copy" % sr2.uuid_of(snap) not in log
