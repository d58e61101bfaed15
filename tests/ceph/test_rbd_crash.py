"""Killed commands and the identity of VDIs, against the real Ceph of the rig.

Every mutating primitive of the rbd driver is killed (SIGKILL, framework/crash.py)
at each of its crash points; then one sr_scan on the master must leave a state
Ceph itself confirms: every VDI xapi knows is on its own image with its own bytes
and size, no image, snapshot or intent is left that no VDI needs.
"""
import json
import time
from contextlib import contextmanager

import pytest

from simulator.errors import XapiError

MiB = 1024 * 1024


@contextmanager
def crash_at(pool, point):
    env = pool.config.setdefault("extra_env", {})
    env["SRKIT_CRASH_AT"] = point
    try:
        yield
    finally:
        env.pop("SRKIT_CRASH_AT", None)


def killed(pool, point, fn, *args):
    """Run ``fn`` with the driver armed to die at ``point``; assert it died there."""
    with crash_at(pool, point):
        with pytest.raises(XapiError):
            fn(*args)
    assert pool.last_call.returncode == -9, (point, pool.last_call.stdout)


def entries(sr):
    return dict((k[4:], json.loads(v)) for k, v in sr.index().items() if k.startswith("vdi."))


def children(sr, image, snap):
    with sr.image(image, read_only=True, snapshot=snap) as s:
        return list(s.list_children2())


def check_consistent(pool, sr, written):
    """Ceph's view against xapi's; ``written`` = {uuid: bytes at offset 0}."""
    index = sr.index()
    assert not [k for k in index if k.startswith("pending.")], index
    known = entries(sr)
    retained = set(k[len("retained."):] for k in index if k.startswith("retained."))
    xapi = dict((r["location"], r) for r in pool.records("VDI"))
    assert set(xapi) == set(known)
    images = set(sr.images())
    for uuid, e in known.items():
        if e["kind"] == "image":
            assert e["image"] == uuid
            with sr.image(uuid, read_only=True) as img:
                size = img.size()
        else:
            snaps = dict((s["name"], s["size"]) for s in sr.image(e["image"], read_only=True)
                         .list_snaps())
            assert e["snap"] == uuid and uuid in snaps
            size = snaps[uuid]
        assert size == e["size"] == int(xapi[uuid]["virtual_size"]), uuid
    assert images == set(e["image"] for e in known.values()) | retained
    for name in images:
        for snap in sr.snaps(name):
            e = known.get(snap)
            assert (e and e["image"] == name) or children(sr, name, snap), (name, snap)
        if name in retained:
            assert sr.snaps(name), name
    for uuid, data in written.items():
        if uuid in known:
            e = known[uuid]
            snap = uuid if e["kind"] == "snap" else None
            assert sr.read(e["image"], 0, len(data), snapshot=snap) == data, uuid


def scan(pool, sr):
    t = time.time()
    pool.sr_scan(sr.ref)
    elapsed = time.time() - t
    assert elapsed < 15, elapsed   # no waiting for a dead process's watch to time out


def base(pool, sr):
    """VDI A ('B' bytes) with snapshot S ('A' bytes)."""
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="A")
    a = sr.uuid_of(v)
    sr.write(a, 0, b"A" * 4096)
    s = pool.vdi_snapshot(v)
    sr.write(a, 0, b"B" * 4096)
    return v, s, {a: b"B" * 4096, sr.uuid_of(s): b"A" * 4096}


POINTS = {
    "create": ("after-intent", "after-image", "after-meta"),
    "destroy": ("after-intent", "after-meta", "after-index", "after-reclaim"),
    "snapshot": ("after-intent", "after-snap", "after-meta"),
    "clone": ("after-intent", "after-snap", "after-protect", "after-clone", "after-strip",
              "after-meta"),
    "resize": ("after-intent", "after-resize", "after-meta"),
    "revert": ("after-intent", "after-rollback", "after-meta"),
    "set_meta": ("after-meta",),
}
CASES = [(c, p) for c, ps in sorted(POINTS.items()) for p in ps]


@pytest.mark.parametrize("command,point", CASES, ids=["%s.%s" % c for c in CASES])
def test_killed_command_is_rolled_forward_or_back_by_scan(pool, sr, command, point):
    v, s, written = base(pool, sr)
    a = sr.uuid_of(v)
    name = "rbd.%s.%s" % (command, point)
    if command == "create":
        killed(pool, name, pool.vdi_create, sr.ref, 2 * MiB)
    elif command == "destroy":
        killed(pool, name, pool.vdi_destroy, v)
    elif command == "snapshot":
        killed(pool, name, pool.vdi_snapshot, v)
    elif command == "clone":
        killed(pool, name, pool.vdi_clone, v)
    elif command == "resize":
        killed(pool, name, pool.vdi_resize, v, 8 * MiB)
    elif command == "revert":
        killed(pool, name, pool.vdi_revert, s)
        written[a] = b"A" * 4096   # a revert once started is finished
    elif command == "set_meta":
        pool.db.update("VDI", v, name_label="renamed")
        killed(pool, name, pool.vdi_update, v)
    scan(pool, sr)
    check_consistent(pool, sr, written)
    if command == "set_meta":
        assert entries(sr)[a]["meta"]["name_label"] == "renamed"
    # and the SR keeps working on the same VDIs
    if a in entries(sr):
        c = pool.vdi_clone(v)
        written[sr.uuid_of(c)] = written[a]
        pool.vdi_destroy(v)
    scan(pool, sr)
    check_consistent(pool, sr, written)


SNAPSHOT_DELETE_POINTS = ("rbd.destroy.after-intent", "rbd.destroy.after-meta",
                          "rbd.destroy.after-index", "rbd.reclaim.before-snap-remove",
                          "rbd.reclaim.after-snap-remove", "rbd.destroy.after-reclaim")


def _trash_snapshot(sr, image, snap):
    """What librbd's snapshot removal does first (SnapshotRemoveRequest: cls_rbd
    ``snapshot_trash_add``): the snapshot moves to the trash namespace under a random
    name. A kill inside librbd's remove_snap leaves exactly this."""
    import struct
    with sr.image(image) as img:
        sid = [x["id"] for x in img.list_snaps() if x["name"] == snap][0]
        header = "rbd_header." + img.id()
    sr.io.execute(header, "rbd", "snapshot_trash_add", struct.pack("<Q", sid))
    with sr.image(image, read_only=True) as img:
        trashed = [x for x in img.list_snaps() if x.get("trash")]
    assert [x["trash"]["original_name"] for x in trashed] == [snap]


@pytest.mark.parametrize("origin_deleted", [False, True], ids=["origin-kept", "origin-deleted"])
@pytest.mark.parametrize("point", SNAPSHOT_DELETE_POINTS + ("inside-librbd",))
def test_killed_snapshot_delete_is_finished_or_undone_by_scan(pool, sr, point, origin_deleted):
    """Issue 16, finding 3: a vdi_delete of a snapshot VDI killed anywhere, including
    inside librbd's own snapshot removal, must not leave its RBD snapshot (and with it
    the image, retained for ever once its VDI is gone too)."""
    v, s, written = base(pool, sr)
    a, snap = sr.uuid_of(v), sr.uuid_of(s)
    if origin_deleted:
        pool.vdi_destroy(v)          # A's image stays, retained for S
        del written[a]
        assert a in sr.images()
    if point == "inside-librbd":
        # the state of a kill inside librbd's remove_snap: the VDI's record and index
        # entry gone, the snapshot trashed
        killed(pool, "rbd.destroy.after-index", pool.vdi_destroy, s)
        _trash_snapshot(sr, a, snap)
    else:
        killed(pool, point, pool.vdi_destroy, s)
    scan(pool, sr)
    scan(pool, sr)
    check_consistent(pool, sr, written)
    if snap in entries(sr):          # killed before it began: the VDI stays, and goes now
        pool.vdi_destroy(s)
        scan(pool, sr)
        check_consistent(pool, sr, dict((u, d) for u, d in written.items() if u != snap))
    if origin_deleted:
        assert sr.images() == []     # the retained image went with its last snapshot
    else:
        assert sr.snaps(a) == []     # no snapshot of any namespace is left on A
        with sr.image(a, read_only=True) as img:
            assert list(img.list_snaps()) == []
        pool.vdi_destroy(v)
        assert sr.images() == []


@pytest.mark.parametrize("point", ["after-clone", "after-strip", "after-flatten",
                                   "after-meta", "after-gc"])
def test_killed_flattening_clone(pool, make_sr, point):
    sr = make_sr(max_clone_depth="0")
    v, s, written = base(pool, sr)
    killed(pool, "rbd.clone." + point, pool.vdi_clone, v)
    scan(pool, sr)
    check_consistent(pool, sr, written)


def test_killed_command_watch_does_not_make_the_vdi_busy(pool, sr):
    """A command killed with the image open leaves its watch for ~30 s; the next
    command on this host recognises the dead process and evicts it."""
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="w")
    a = sr.uuid_of(v)
    killed(pool, "rbd.resize.after-intent", pool.vdi_resize, v, 8 * MiB)
    with sr.image(a, read_only=True) as img:
        assert list(img.watchers_list())   # the dead process's watch is still there
    t = time.time()
    pool.vdi_destroy(v)
    assert time.time() - t < 10
    assert a not in sr.images()


# --- identity: never from metadata a clone inherited (issue 11, item 1) ---------------

def _interrupted_clone(sr, parent):
    """What a vdi_clone killed between the rbd clone and recording the child left,
    made with librbd: protected snapshot parent@.clone-X and image X."""
    import rbd
    import uuid as uuidlib
    x = str(uuidlib.uuid4())
    with sr.image(parent) as img:
        img.create_snap(".clone-" + x)
        img.protect_snap(".clone-" + x)
    rbd.RBD().clone(sr.io, parent, ".clone-" + x, sr.io, x, features=1 | 4 | 8 | 16 | 32)
    sr.write(x, 0, b"X" * 4096)
    assert "srkit.vdi." + parent in sr.metadata(x)   # librbd copied the parent's metadata
    return x


def test_interrupted_clone_never_repoints_the_parent(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="A")
    a = sr.uuid_of(v)
    sr.write(a, 0, b"A" * 4096)
    x = _interrupted_clone(sr, a)
    for _ in range(3):
        pool.sr_scan(sr.ref)
        assert entries(sr)[a]["image"] == a
        assert [r["location"] for r in pool.records("VDI")] == [a]
        assert sr.read(entries(sr)[a]["image"], 0, 4096) == b"A" * 4096
    pool.vdi_destroy(v)
    assert x in sr.images()
    assert sr.read(x, 0, 4096) == b"X" * 4096
    pool.sr_scan(sr.ref)
    assert pool.records("VDI") == []
    assert a not in entries(sr)


def test_clone_carries_no_metadata_of_its_parent(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="A")
    pool.vdi_snapshot(v)
    c = pool.vdi_clone(v)
    md = sr.metadata(sr.uuid_of(c))
    assert sorted(k for k in md if k.startswith("srkit.")) == \
        sorted(["srkit.depth", "srkit.vdi." + sr.uuid_of(c)])


def test_rebuilt_index_maps_every_vdi_to_its_own_image(pool, sr, device_config, tmp_path):
    import rados
    from simulator import Pool
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="A")
    a = sr.uuid_of(v)
    sr.write(a, 0, b"A" * 4096)
    s = pool.vdi_snapshot(v)
    c1 = pool.vdi_clone(v)
    c2 = pool.vdi_clone(s)
    c3 = pool.vdi_clone(c1)
    data = {}
    for i, ref in enumerate((v, c1, c2, c3)):
        data[sr.uuid_of(ref)] = bytes([0x41 + i]) * 4096
        sr.write(sr.uuid_of(ref), 0, data[sr.uuid_of(ref)])
    snap = sr.uuid_of(s)
    x = _interrupted_clone(sr, sr.uuid_of(c1))   # and a leftover clone of a clone
    p2 = Pool(str(tmp_path / "pool2"), hosts=1)
    try:
        ref = p2.sr_introduce(sr.uuid, "rbd", name_label="adopted", shared=True)
        pbd = p2.pbd_create(p2.master, ref, device_config)
        p2.pbd_plug(pbd)
        for _ in range(12):
            keys = [k for k in sr.index() if not k.startswith("sr.")]
            with rados.WriteOpCtx() as op:
                sr.io.remove_omap_keys(op, tuple(keys))
                sr.io.operate_write_op(op, "srkit.sr")
            p2.sr_scan(ref)
            got = entries(sr)
            assert set(got) == set(data) | {snap}
            for uuid in data:
                assert got[uuid]["image"] == uuid
                assert sr.read(got[uuid]["image"], 0, 4096) == data[uuid]
            assert got[snap]["image"] == a and got[snap]["snap"] == snap
            assert set(r["location"] for r in p2.records("VDI")) == set(data) | {snap}
            assert x not in got
    finally:
        p2.close()
