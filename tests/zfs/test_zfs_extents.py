"""extents and changed_extents of the zfsvol driver, read from zfs send streams of real
zvols, on both APIs (driver used in-process through its CLI backend, and by pyzfs
where the test interpreter can import it)."""
import uuid

import pytest

from simulator.testkit import driver_context, read_at, write_at
from zfs_rig import MiB, destroy_dataset, sh
from framework import meta as m

pytestmark = pytest.mark.zfs


@pytest.fixture
def driver(tmp_path, zpool):
    from drivers.zfs.driver import ZFSVolDriver
    from framework.options import validate
    cfg = validate(ZFSVolDriver.options, {"pool": zpool, "api": "cli"}, None)
    # a fresh SR uuid per test: a name another test's cleanup missed can never collide
    d = ZFSVolDriver(str(uuid.uuid4()), cfg, driver_context(tmp_path))
    d.sr_create(0)
    yield d
    destroy_dataset(d.sr_ds)


A = "aaaaaaaa-0000-4000-8000-0000000000a1"
S1 = "aaaaaaaa-0000-4000-8000-0000000000b1"
S2 = "aaaaaaaa-0000-4000-8000-0000000000b2"
NEVER = "aaaaaaaa-0000-4000-8000-0000000000c1"   # a name no zvol of this pool had before


def test_extents_and_changed_extents(driver, zfs):
    bs = driver.blocksize
    v = driver.create(A, 64 * MiB, m.new("x"))
    assert v.virtual_size == 64 * MiB
    path = driver.attach(A, True)
    assert driver.extents(A) == []
    write_at(path, 0, b"\1" * bs)
    write_at(path, 10 * MiB, b"\2" * (2 * bs))
    assert driver.extents(A) == [(0, bs), (10 * MiB, 2 * bs)]
    driver.snapshot(A, S1, m.new("s1", is_snapshot=True, snapshot_of=A))
    assert driver.extents(S1) == [(0, bs), (10 * MiB, 2 * bs)]
    write_at(path, 10 * MiB + bs, b"\3" * bs)
    write_at(path, 40 * MiB, b"\4" * bs)
    assert driver.changed_extents(A, S1) == [(10 * MiB + bs, bs), (40 * MiB, bs)]
    driver.snapshot(A, S2, m.new("s2", is_snapshot=True, snapshot_of=A))
    assert driver.changed_extents(S2, S1) == [(10 * MiB + bs, bs), (40 * MiB, bs)]
    assert driver.changed_extents(A, S2) == []
    # a discarded range that held data reads as zeros now: changed; one that was a hole: not
    sh("blkdiscard", "-o", "0", "-l", str(bs), path)
    sh("blkdiscard", "-o", str(20 * MiB), "-l", str(bs), path)
    assert driver.changed_extents(A, S2) == [(0, bs)]
    assert driver.extents(A) == [(10 * MiB, 2 * bs), (40 * MiB, bs)]
    # the temporary snapshots taken for a writable VDI are gone again
    assert [n for n in zfs.names(driver.sr_ds) if "@x-" in n] == []


def test_attach_waits_for_the_link_and_fails_clearly_when_it_never_comes(driver, monkeypatch):
    import time
    from framework.errors import SRError
    from drivers.zfs import device

    driver.config["udev_timeout"] = 2
    driver.create(NEVER, MiB, m.new("x"))
    # A node that never comes is simulated: ZFS 2.1 made a node even for a zvol created
    # with volmode=none in some guest runs, so nothing real guarantees its absence.
    looked = []
    monkeypatch.setattr(device, "serves", lambda *a: looked.append(a) and False)
    t = time.monotonic()
    with pytest.raises(SRError) as e:
        driver.attach(NEVER, True)
    assert e.value.code == 46 and "/dev/zvol/%s/%s" % (driver.sr_ds, NEVER) in str(e.value)
    assert 2 <= time.monotonic() - t < 10
    assert len(looked) > 5      # it kept looking until the timeout


def test_attach_never_serves_the_node_of_a_zvol_destroyed_under_the_same_name(driver):
    """ZFS removes a destroyed zvol's zd node later, from a task queue, and udev its link
    later still; meanwhile the node answers to the name (CI saw attach return it)."""
    from drivers.zfs import device

    name = driver.sr_ds + "/" + A
    size = 64 * MiB
    driver.create(A, size, m.new("x"))
    write_at(driver.attach(A, True), 0, b"\1" * 512)
    for attempt in range(5):    # the window is short: try to land in it a few times
        driver.zfs.destroy(name)
        size = MiB if size != MiB else 2 * MiB
        driver.create(A, size, m.new("x"))
        path = driver.attach(A, True)
        assert device.identify(path) == (name, size)
        assert read_at(path, 0, 512) == bytes(512)      # the new zvol: never written
        write_at(path, 0, b"\1" * 512)


def test_zd_nodes_name_their_zvols(driver):
    from drivers.zfs import device
    driver.create(A, 4 * MiB, m.new("x"))
    path = driver.attach(A, True)
    name = driver.sr_ds + "/" + A
    assert device.identify(path) == (name, 4 * MiB)
    assert device.serves(path, name, 4 * MiB)
    assert not device.serves(path, name, 8 * MiB)
    assert not device.serves(path, name + "x", 4 * MiB)
    assert name in device.nodes()
    assert device.identify("/dev/null") is None
