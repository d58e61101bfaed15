"""rbd on the datapaths a real host uses, run for real in the guest: rbd-nbd (/dev/nbdN),
krbd (/dev/rbdN), and ``auto``, which must pick rbd-nbd when both are there (as on an
XCP-ng 8.3 host). After each driver call the tests ask the kernel (sysfs) and Ceph
(librbd, the lease object, the blocklist) what exists, never the driver."""
import json
import os
import subprocess
import time

import pytest

from rbd_guest import (MiB, device_size, krbd_devices, mapped, nbd_server, pattern,
                       rbd_nbd_daemons, read_only, unmapped_soon)
from simulator.errors import XapiError
from simulator.testkit import read_at, wait_until, write_at

pytestmark = pytest.mark.hostpath

KERNEL = ["nbd", "krbd"]
PREFIX = {"nbd": "/dev/nbd", "krbd": "/dev/rbd"}


def smlog(pool):
    with open(os.path.join(pool.path, "SMlog")) as f:
        return f.read()


@pytest.mark.parametrize("datapath", KERNEL)
def test_write_through_the_device_read_back_through_a_second_attach(pool, make_sr, datapath):
    sr = make_sr(datapath=datapath)
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="io")
    uuid = sr.uuid_of(v)
    host0, host1 = pool.hosts
    dev = pool.vdi_attach(v, host=host0, writable=True)["params"]
    assert dev.startswith(PREFIX[datapath]) and mapped(dev)
    assert "VDI %s attached read-write through datapath %s: %s" % (uuid, datapath, dev) \
        in smlog(pool)
    data = pattern(2 * MiB, 5)
    write_at(dev, 1 * MiB, data)
    assert sr.read(uuid, 1 * MiB, 2 * MiB) == data          # librbd sees it
    pool.vdi_detach(v, host=host0)
    assert unmapped_soon(dev), "%s still mapped after detach" % dev
    with sr.image(uuid, read_only=True) as img:
        assert list(img.watchers_list()) == []
    # a second attach, read-only on the other host, reads the bytes back
    dev1 = pool.vdi_attach(v, host=host1, writable=False)["params"]
    assert dev1.startswith(PREFIX[datapath]) and read_only(dev1)
    assert read_at(dev1, 1 * MiB, 2 * MiB) == data
    pool.vdi_detach(v, host=host1)
    assert unmapped_soon(dev1)
    assert rbd_nbd_daemons() == [] and krbd_devices() == {}


def test_auto_picks_rbd_nbd_when_krbd_is_there_too(pool, make_sr):
    sr = make_sr(datapath="auto")
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="auto")
    dev = pool.vdi_attach(v, writable=True)["params"]
    assert dev.startswith("/dev/nbd") and nbd_server(dev) in rbd_nbd_daemons()
    assert "through datapath nbd: %s" % dev in smlog(pool)
    pool.vdi_detach(v)
    assert unmapped_soon(dev)


@pytest.mark.parametrize("datapath", KERNEL)
def test_snapshot_attaches_read_only_by_spec(pool, make_sr, datapath):
    """rbd-nbd 16.2 refuses `--snap` ("unknown args"): a host could not attach, so not
    export or copy, any snapshot. The image spec pool/ns/image@snap is what works."""
    sr = make_sr(datapath=datapath)
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="s")
    base = sr.uuid_of(v)
    sr.write(base, 0, b"S" * 4096)
    s = pool.vdi_snapshot(v)
    sr.write(base, 0, b"T" * 4096)
    dev = pool.vdi_attach(s, writable=False)["params"]
    assert dev.startswith(PREFIX[datapath]) and read_only(dev)
    assert read_at(dev, 0, 4096) == b"S" * 4096
    assert sr.images() == [base]        # the snapshot itself, no temporary clone
    pool.vdi_detach(s)
    assert unmapped_soon(dev)


@pytest.mark.parametrize("datapath", KERNEL)
def test_online_grow_is_seen_by_the_attached_device(pool, make_sr, datapath):
    sr = make_sr(datapath=datapath)
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="grow")
    dev = pool.vdi_attach(v, writable=True)["params"]
    assert device_size(dev) == 4 * MiB
    assert pool.vdi_resize(v, 12 * MiB) == 12 * MiB
    assert wait_until(lambda: device_size(dev) == 12 * MiB, 20), device_size(dev)
    write_at(dev, 12 * MiB - 4096, b"E" * 4096)
    assert sr.read(sr.uuid_of(v), 12 * MiB - 4096, 4096) == b"E" * 4096
    pool.vdi_detach(v)


def _blocklist(cluster):
    ret, out, _ = cluster.mon_command(json.dumps({"prefix": "osd blocklist ls",
                                                  "format": "json"}), b"")
    return [b["addr"] for b in json.JSONDecoder().raw_decode(out.decode() or "[]")[0]]


@pytest.mark.parametrize("datapath", KERNEL)
def test_fencing_a_dead_holder_blocklists_its_kernel_client(pool, make_sr, datapath,
                                                            device_config, cluster):
    from drivers.ceph import admin
    sr = make_sr(datapath=datapath)
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="fence")
    uuid = sr.uuid_of(v)
    host0, host1 = pool.hosts
    dev0 = pool.vdi_attach(v, host=host0, writable=True)["params"]
    write_at(dev0, 0, b"0" * 4096)
    lease = json.loads(sr.io.read("srkit.active." + uuid).decode())
    assert lease["datapath"] == datapath and len(lease["clients"]) == 1, lease
    with sr.image(uuid, read_only=True) as img:   # the client is the device's own
        assert [w["addr"] for w in img.watchers_list()] == [lease["clients"][0]["addr"]]
    with pytest.raises(XapiError) as e:
        pool.vdi_attach(v, host=host1, writable=True)
    assert e.value.code == "VDI_IN_USE"
    done = admin.fence(dict(device_config, namespace=sr.uuid), sr.uuid, uuid, expire=600)
    try:
        assert done["blocklisted"] == [lease["clients"][0]["addr"]]
        assert set(done["blocklisted"]) <= set(_blocklist(cluster))
        for dp in pool.db.find("datapath", VDI=v, host=host1):
            pool.db.delete("datapath", dp)
        dev1 = pool.vdi_attach(v, host=host1, writable=True)["params"]
        write_at(dev1, 0, b"1" * 4096)
        # the fenced device can no longer write: its write fails or never completes
        dd = subprocess.Popen(["dd", "if=/dev/zero", "of=" + dev0, "bs=4096", "count=1",
                               "oflag=direct,sync", "conv=notrunc"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            rc = dd.wait(timeout=20)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc != 0
        assert sr.read(uuid, 0, 4096) == b"1" * 4096
        pool.vdi_detach(v, host=host1)
        t = time.time()
        pool.vdi_detach(v, host=host0)   # the fenced datapath goes without hanging
        assert time.time() - t < 180     # bounded: a stuck unmap is signalled (TCG time)
        assert unmapped_soon(dev0)
        if rc is None:
            dd.wait(timeout=30)
        assert sr.read(uuid, 0, 4096) == b"1" * 4096
    finally:
        for a in done["blocklisted"]:
            cluster.mon_command(json.dumps({"prefix": "osd blocklist", "blocklistop": "rm",
                                            "addr": a}), b"")
