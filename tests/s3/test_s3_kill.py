"""Crashes on the datapath: the NBD server killed mid-write, the S3 server killed mid-upload.
After detach (and a scan) every VDI reads back as of its last completed flush."""
import mmap
import os
import signal
import subprocess
import threading
import time

import pytest

from s3_rig import CHUNK, MiB, SR, make_admin, pattern, read_vdi, servers_of
from simulator.testkit import REPO, write_at

RIG = os.path.join(REPO, "tests", "rigs", "s3.sh")


def _direct_writer(path, seed, stop, errors):
    """Unflushed writes: O_DIRECT (no page cache), never fsync."""
    buf = mmap.mmap(-1, MiB)
    fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
    try:
        i = 0
        while not stop.is_set():
            buf[:] = pattern((seed, i % 4), MiB)
            os.pwrite(fd, buf, (i % 4) * MiB)
            i += 1
    except OSError as e:
        errors.append(e)
    finally:
        os.close(fd)


def test_nbd_server_killed_mid_write_reads_back_last_flush(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="victim")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    write_at(path, 0, pattern("flushed", 4 * MiB))           # fsync: a completed flush
    stop, errors = threading.Event(), []
    t = threading.Thread(target=_direct_writer, args=(path, "lost", stop, errors))
    t.start()
    time.sleep(1.0)
    servers = servers_of(uuid)
    assert len(servers) == 1
    os.kill(servers[0], signal.SIGKILL)
    time.sleep(0.5)
    stop.set()
    t.join(30)
    assert not t.is_alive()
    pool.vdi_detach(v)                                          # frees the device all the same
    assert servers_of(uuid) == []
    with open("/proc/mounts") as f:
        assert uuid not in f.read()
    pool.sr_scan(sr.ref)
    assert read_vdi(pool, v, 0, 4 * MiB) == pattern("flushed", 4 * MiB)


@pytest.fixture
def private_server(tmp_path, s3_env):
    """A SeaweedFS of this test's own, so killing it disturbs nobody."""
    d = str(tmp_path / "rig")
    subprocess.run(["bash", RIG, "up", d], check=True, timeout=120)
    try:
        env = subprocess.run(["bash", RIG, "env", d], check=True, capture_output=True,
                             text=True).stdout
        values = dict(part.split("=", 1) for line in env.splitlines()
                      for part in line.replace("export ", "").split())
        yield d, values
    finally:
        subprocess.run(["bash", RIG, "down", d], timeout=60)


def test_s3_server_killed_mid_upload_keeps_last_flush(pool, private_server, device_config):
    d, env = private_server
    dc = dict(device_config, endpoint=env["SRKIT_S3_ENDPOINT"])
    admin = make_admin(dc["endpoint"], dc["access_key"], dc["secret_key"])
    ref = pool.sr_create("s3", dc, name_label="private", shared=True)
    sr = SR(pool, ref, admin, dc)
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="victim")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    write_at(path, 0, pattern("flushed", 8 * MiB))
    flushed = sr.manifest(uuid)["chunks"]
    outcome = []

    def flush_new_data():
        try:
            write_at(path, 0, pattern("doomed", 8 * MiB))   # 8 chunk PUTs, then the manifest
            outcome.append("ok")
        except OSError as e:
            outcome.append(e)

    t = threading.Thread(target=flush_new_data)
    t.start()
    deadline = time.time() + 20   # kill the server once the first new chunk has landed
    doomed0 = pattern("doomed", 8 * MiB)[:CHUNK]
    from drivers.s3 import chunks as C
    while time.time() < deadline:
        if any(k.endswith(C.digest(doomed0)) for k, _ in sr.keys("chunks/")):
            break
        time.sleep(0.01)
    with open(os.path.join(d, "weed.pid")) as f:
        os.kill(int(f.read()), signal.SIGKILL)
    t.join(60)
    assert not t.is_alive()
    for pid in servers_of(uuid):          # the host dies too: nothing retries the flush
        os.kill(pid, signal.SIGKILL)
    subprocess.run(["bash", RIG, "start", d], check=True, timeout=120)
    pool.vdi_detach(v)
    pool.sr_scan(sr.ref)
    data = read_vdi(pool, v, 0, 8 * MiB)
    if outcome == ["ok"]:   # the manifest made it before the kill: that was the last flush
        assert data == pattern("doomed", 8 * MiB)
    else:
        assert sr.manifest(uuid)["chunks"] == flushed
        assert data == pattern("flushed", 8 * MiB)
        sr.gc(grace=0)       # the orphans of the failed upload go; the VDI is intact
        assert set(sr.chunks()) == set(flushed.values())
        assert read_vdi(pool, v, 0, 8 * MiB) == pattern("flushed", 8 * MiB)


def _loops_of(root):
    out = []
    for name in os.listdir("/sys/block"):
        try:
            with open("/sys/block/%s/loop/backing_file" % name) as f:
                if f.read().startswith(root):
                    out.append(name)
        except OSError:
            pass
    return out


@pytest.mark.parametrize("recovery", ["attach", "scan"])
@pytest.mark.parametrize("point", ["s3.attach.after-server", "s3.attach.after-connect"])
def test_killed_attach_is_undone_by_the_next_attach_or_scan(pool, sr, point, recovery):
    """The fuse datapath's side of the crash matrix of tests/hostpath/test_s3_leftovers.py
    (same records, same recovery): no server, mount or loop device is left."""
    v = pool.vdi_create(sr.ref, 2 * CHUNK, name_label="victim")
    uuid = sr.location(v)
    write_at(pool.vdi_attach(v)["params"], 0, pattern("flushed", 2 * CHUNK))
    pool.vdi_detach(v)
    pool.config["extra_env"] = {"SRKIT_CRASH_AT": point}
    with pytest.raises(Exception):
        pool.call("vdi_attach", vdi=v, args=["true"])
    pool.config["extra_env"] = {}
    assert len(servers_of(uuid)) == 1
    if recovery == "scan":
        pool.sr_scan(sr.ref)
        assert servers_of(uuid) == [] and _loops_of(pool.path) == []
    path = pool.vdi_attach(v)["params"]
    assert len(servers_of(uuid)) == 1 and len(_loops_of(pool.path)) == 1
    write_at(path, CHUNK, pattern("after", CHUNK))
    pool.vdi_detach(v)
    assert servers_of(uuid) == [] and _loops_of(pool.path) == []
    with open("/proc/mounts") as f:
        assert uuid not in f.read()
    assert read_vdi(pool, v, 0, 2 * CHUNK) == pattern("flushed", CHUNK) + pattern("after", CHUNK)


def test_a_stale_record_never_detaches_a_loop_device_another_vdi_now_uses(pool, sr):
    """A killed vdi_attach's record names the loop device it had; once that number is
    free, another VDI's attach may get it. Cleaning the stale record (sr_scan, or the next
    attach of its VDI) must leave that device alone: it once made a fresh attach read b''
    at 6 MiB (the device had been detached under it: size 0)."""
    from framework.files import fusedev
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="in use")
    dead = pool.vdi_create(sr.ref, 8 * MiB, name_label="killed attach")
    path = pool.vdi_attach(v)["params"]
    try:
        write_at(path, 6 * MiB, pattern("mine", MiB))
        state = os.path.join(pool.host_dirs(pool.master)["state"], sr.uuid)
        gone = sr.location(dead)
        fusedev.save_record(state, gone, {
            "kind": "fuse", "state": "starting", "vdi": gone, "writable": True,
            "settings": os.path.join(state, "nbd.%s.json" % gone), "pid": 0,
            "socket": "nbd.%s.sock" % gone, "mount": os.path.join(state, "nbd", gone),
            "loop": path, "cache": ""})
        pool.sr_scan(sr.ref)
        assert fusedev.load_record(state, gone) is None   # the stale record is cleaned
        fd = os.open(path, os.O_RDONLY)
        try:
            assert os.lseek(fd, 0, os.SEEK_END) == 8 * MiB
            assert os.pread(fd, MiB, 6 * MiB) == pattern("mine", MiB)
        finally:
            os.close(fd)
    finally:
        pool.vdi_detach(v)
    assert read_vdi(pool, v, 6 * MiB, MiB) == pattern("mine", MiB)
