"""SRs of sm_drivers/ZFSVolSR on real OpenZFS: dataset, probe, stats, pools made from
devices, option checks against the pool."""
import os
import subprocess

import pytest

from simulator.errors import XapiError
from simulator.testkit import write_at
from zfs_rig import MiB, sh

pytestmark = pytest.mark.zfs


def test_sr_is_a_marked_dataset_and_goes_away(pool, make_sr, zfs, zpool):
    sr = make_sr(compression="lz4")
    assert zfs.get(sr.dataset, "srkit:sr") == (sr.uuid, "local")
    assert zfs.get(sr.dataset, "mountpoint")[0] == "none"
    assert zfs.get(sr.dataset, "compression") == ("lz4", "local")
    xml = pool.sr_probe("zfsvol", {"pool": zpool})
    assert "<UUID>%s</UUID>" % sr.uuid in xml and "<name_label>%s</name_label>" % zpool in xml
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="x")
    write_at(pool.vdi_attach(v)["params"], 0, os.urandom(2 * MiB))
    pool.vdi_detach(v)
    pool.sr_update(sr.ref)
    rec = pool.sr_record(sr.ref)
    used = int(zfs.get(sr.dataset, "used")[0])
    avail = int(zfs.get(sr.dataset, "available")[0])
    assert int(rec["physical_utilisation"]) == used >= 2 * MiB
    assert int(rec["physical_size"]) == used + avail
    assert int(rec["virtual_allocation"]) == 8 * MiB
    for pbd in pool.sr_record(sr.ref)["PBDs"]:
        pool.pbd_unplug(pbd)
    with pytest.raises(XapiError) as e:
        pool.sr_destroy(sr.ref)
    assert e.value.code == "SR_NOT_EMPTY"
    pool.vdi_destroy(v)
    pool.sr_destroy(sr.ref)
    assert not zfs.exists(sr.dataset)


def test_sr_create_on_a_missing_pool_is_47(pool):
    with pytest.raises(XapiError) as e:
        pool.sr_create("zfsvol", {"pool": "nosuchpool"})
    assert e.value.code == "SR_BACKEND_FAILURE_47"


def test_bad_volblocksize_is_115(pool, zpool):
    with pytest.raises(XapiError) as e:
        pool.sr_create("zfsvol", {"pool": zpool, "volblocksize": "12288"})
    assert e.value.code == "SR_BACKEND_FAILURE_115" and "volblocksize" in str(e.value)


@pytest.fixture
def loopdevs(tmp_path):
    made = []
    sh("modprobe", "loop", check=False)   # a module in Debian's kernel

    def make(n=1, size=256 * MiB):
        for i in range(n):
            img = tmp_path / ("dev%d.img" % len(made))
            with open(img, "wb") as f:
                f.truncate(size)
            made.append(sh("losetup", "--find", "--show", str(img)).strip())
        return made[-n:]
    yield make
    for dev in made:
        subprocess.run(["losetup", "-d", dev], capture_output=True)


def test_pool_from_devices_refuses_data_unless_forced(pool, zfs, loopdevs):
    dev, = loopdevs()
    sh("mkfs.ext4", "-q", dev)
    dc = {"pool": "srdev", "devices": dev, "ashift": "12", "compression": "zstd"}
    with pytest.raises(XapiError) as e:
        pool.sr_create("zfsvol", dc)
    # 16: xapi reports SR_DEVICE_IN_USE (the detail, naming ext4 and force, is in SMlog)
    assert e.value.code == "SR_DEVICE_IN_USE"
    assert subprocess.run(["zpool", "list", "srdev"], capture_output=True).returncode != 0
    ref = pool.sr_create("zfsvol", dict(dc, force="true"))
    uuid = pool.sr_record(ref)["uuid"]
    assert sh("zpool", "get", "-Hp", "-o", "value", "ashift", "srdev").strip() == "12"
    assert zfs.get("srdev/" + uuid, "compression") == ("zstd", "local")
    for pbd in pool.sr_record(ref)["PBDs"]:
        pool.pbd_unplug(pbd)
    pool.sr_destroy(ref)    # the pool was made for this SR: it goes with it
    assert subprocess.run(["zpool", "list", "srdev"], capture_output=True).returncode != 0


def test_compression_is_checked_against_the_pool_features(pool, loopdevs):
    dev, = loopdevs()
    sh("zpool", "create", "-d", "-o", "cachefile=none", "oldpool", dev)
    try:
        with pytest.raises(XapiError) as e:
            pool.sr_create("zfsvol", {"pool": "oldpool", "compression": "zstd"})
        assert e.value.code == "SR_BACKEND_FAILURE_115" and "zstd_compress" in str(e.value)
    finally:
        sh("zpool", "destroy", "oldpool")
