"""The s3 datapath a real host uses: the kernel NBD client (/dev/nbdN) in front of our
NBD server (drivers/s3/nbd_server.py), in the guest (s3_guest.py says how). Data is
checked through a second attach and against what the bucket itself holds."""
import mmap
import os
import signal
import subprocess
import threading
import time

import pytest

from s3_guest import (admin, device_config, guest_s3, make_sr, nbds,  # noqa: F401
                      pool, servers_of, sr)
from s3_rig import CHUNK, MiB, discard_and_sync, pattern, read_vdi
from simulator.conformance import outcome
from simulator.errors import XapiError
from simulator.testkit import read_at, write_at

pytestmark = pytest.mark.hostpath


def _smlog(pool):
    with open(os.path.join(pool.path, "SMlog")) as f:
        return f.read()


def _direct_write(path, offset, data, flags=0):
    """One O_DIRECT write (no page cache), no fsync."""
    buf = mmap.mmap(-1, len(data))
    buf[:] = data
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT | flags)
    try:
        assert os.pwrite(fd, buf, offset) == len(data)
    finally:
        os.close(fd)


def test_auto_attaches_through_nbd_and_data_reads_back_through_a_second_attach(pool, sr, nbds):
    v = pool.vdi_create(sr.ref, 4 * CHUNK, name_label="disk")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    assert path.startswith("/dev/nbd") and path in nbds()
    assert "through datapath nbd: %s" % path in _smlog(pool)
    data = pattern("kernel", 3 * CHUNK + 4096)
    write_at(path, 512, data)
    assert read_at(path, 512, len(data)) == data
    pool.vdi_detach(v)
    assert path not in nbds() and servers_of(uuid) == []
    assert "detached from datapath nbd (%s)" % path in _smlog(pool)
    # the manifest names the chunks; a read-only attach on the other host reads them
    assert sorted(sr.manifest(uuid)["chunks"]) == ["0", "1", "2", "3"]
    other = pool.hosts[1]
    ro = pool.vdi_attach(v, host=other, writable=False)["params"]
    try:
        assert ro.startswith("/dev/nbd")
        with open("/sys/block/%s/ro" % os.path.basename(ro)) as f:
            assert f.read().strip() == "1"
        assert read_at(ro, 512, len(data)) == data
        assert read_at(ro, 0, 512) == bytes(512)
        with pytest.raises(OSError):
            write_at(ro, 0, b"x" * 512)
    finally:
        pool.vdi_detach(v, host=other)
    assert nbds() == []


def test_flush_and_fua_reach_s3(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * CHUNK, name_label="durable")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    try:
        _direct_write(path, 0, pattern("cached", CHUNK))
        assert sr.manifest(uuid)["chunks"] == {}          # in the write-back cache only
        fd = os.open(path, os.O_WRONLY)
        os.fsync(fd)                                      # NBD_CMD_FLUSH
        os.close(fd)
        first = sr.manifest(uuid)["chunks"]
        assert list(first) == ["0"] and first["0"] in sr.chunks()
        _direct_write(path, CHUNK, pattern("fua", CHUNK), os.O_DSYNC)   # FUA write
        second = sr.manifest(uuid)["chunks"]
        assert sorted(second) == ["0", "1"] and second["1"] in sr.chunks()
    finally:
        pool.vdi_detach(v)
    assert read_vdi(pool, v, CHUNK, CHUNK) == pattern("fua", CHUNK)


def test_discard_makes_holes(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * CHUNK, name_label="trim")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    try:
        write_at(path, 0, pattern("full", 4 * CHUNK))
        discard_and_sync(path, CHUNK, 2 * CHUNK)
        assert sorted(sr.manifest(uuid)["chunks"]) == ["0", "3"]
    finally:
        pool.vdi_detach(v)
    data = read_vdi(pool, v, 0, 4 * CHUNK)
    full = pattern("full", 4 * CHUNK)
    assert data == full[:CHUNK] + bytes(2 * CHUNK) + full[3 * CHUNK:]


def test_server_killed_mid_write_then_detach_attach_reads_last_flush(pool, sr, nbds):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="victim")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    write_at(path, 0, pattern("flushed", 4 * MiB))
    stop, errors = threading.Event(), []

    def writer():
        try:
            i = 0
            while not stop.is_set():
                _direct_write(path, (i % 4) * MiB, pattern(("lost", i), MiB))
                i += 1
        except OSError as e:
            errors.append(e)

    t = threading.Thread(target=writer)
    t.start()
    time.sleep(1.0)
    (server,) = servers_of(uuid)
    os.kill(server, signal.SIGKILL)
    t.join(60)
    stop.set()
    t.join(60)
    assert not t.is_alive() and errors, "writes to a dead server must fail"
    pool.vdi_detach(v)
    assert nbds() == [] and servers_of(uuid) == []
    assert read_vdi(pool, v, 0, 4 * MiB) == pattern("flushed", 4 * MiB)


def test_attach_again_after_the_server_died_serves_the_vdi(pool, sr, nbds):
    """xapi repeats vdi_attach (a toolstack restart): a device whose server is gone is
    not returned; the attach makes a working one."""
    v = pool.vdi_create(sr.ref, 2 * CHUNK, name_label="again")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    write_at(path, 0, pattern("before", CHUNK))
    (server,) = servers_of(uuid)
    os.kill(server, signal.SIGKILL)
    again = pool.call("vdi_attach", vdi=v, args=["true"])["params"]
    assert again.startswith("/dev/nbd") and again in nbds()
    assert len(servers_of(uuid)) == 1
    assert read_at(again, 0, CHUNK) == pattern("before", CHUNK)
    pool.vdi_detach(v)
    assert nbds() == [] and servers_of(uuid) == []


def test_without_nbd_client_auto_falls_back_to_fuse_and_nbd_fails_naming_the_package(
        pool, sr, make_sr, tmp_path, nbds):
    forced = make_sr(datapath="nbd")
    v = pool.vdi_create(forced.ref, CHUNK, name_label="x")
    w = pool.vdi_create(sr.ref, CHUNK, name_label="y")
    blank = tmp_path / "not-nbd-client"
    blank.write_bytes(b"")
    hidden = subprocess.run(["which", "nbd-client"], capture_output=True, text=True).stdout.strip()
    subprocess.run(["mount", "--bind", str(blank), hidden], check=True)  # the guest's overlay
    try:
        with pytest.raises(XapiError) as e:
            pool.vdi_attach(v)
        assert e.value.code == "SR_BACKEND_FAILURE_46" and "package nbd" in str(e.value)
        with pytest.raises(XapiError) as e:
            make_sr(datapath="nbd")
        assert e.value.code == "SR_BACKEND_FAILURE_47" and "package nbd" in str(e.value)
        path = pool.vdi_attach(w)["params"]                 # auto: nbdfuse + loop
        assert path.startswith("/dev/loop") and "through datapath fuse" in _smlog(pool)
        write_at(path, 0, pattern("fuse", CHUNK))
        pool.vdi_detach(w)
    finally:
        subprocess.run(["umount", hidden], check=True)
    assert read_vdi(pool, w, 0, CHUNK) == pattern("fuse", CHUNK)
    assert nbds() == [] and servers_of(forced.location(v)) == []


@pytest.mark.skipif(os.environ.get("SRKIT_S3_NBD_CONFORMANCE", "1") == "0",
                    reason="SRKIT_S3_NBD_CONFORMANCE=0")
def test_conformance_on_the_kernel_client(device_config, tmp_path, nbds):
    dc = dict(device_config, datapath="nbd", cache_dir="@tmpdir",
              prefix="conformance-%s" % os.urandom(4).hex())
    outcome.run("S3SR", dc, tmp_path, hosts=2, timeout=3600).assert_green(
        {"test_unadvertised_operations_are_refused_by_xapi"})
    assert nbds() == []
