"""Gluster failures on the real daemons: a brick process killed mid-test (the replica
carries on), glusterd stopped or hung (the driver faults within its timeout)."""
import os
import signal
import subprocess
import time

import pytest

from simulator.errors import XapiError

from gluster_rig import brick_pids, gluster_cli, mounts_at
from simulator.testkit import wait_until

MiB = 1024 * 1024


def _glusterd_pid(env):
    with open(os.path.join(env["SRKIT_GLUSTER_DIR"], "run", "glusterd.pid")) as f:
        return int(f.read().strip())


def _start_glusterd(env):
    d = env["SRKIT_GLUSTER_DIR"]
    subprocess.run(["glusterd", "-f", d + "/glusterd.vol", "-p", d + "/run/glusterd.pid",
                    "-l", d + "/log/glusterd.log"], check=True, timeout=60)
    assert wait_until(lambda: gluster_cli(env, "volume", "list").returncode == 0, 30)


def _client_processes(mountpoint):
    from drivers.gluster.mount import _client_pids
    return _client_pids(mountpoint)


@pytest.fixture
def bricks_restored(gluster_env):
    yield
    volume = gluster_env["SRKIT_GLUSTER_VOLUME"]

    def restarted():
        # `start force` can be lost while glusterd is busy (a loaded machine): repeat it
        if len(brick_pids(gluster_env, volume)) == 2:
            return True
        gluster_cli(gluster_env, "volume", "start", volume, "force")
        return wait_until(lambda: len(brick_pids(gluster_env, volume)) == 2, 15)
    assert wait_until(restarted, 120, 1)
    gluster_cli(gluster_env, "volume", "heal", volume)
    bricks = gluster_env["SRKIT_GLUSTER_BRICKS"].split(":")

    def tree(brick):   # `heal info` needs glusterd's default socket: compare the bricks
        return sorted((os.path.relpath(d, brick), sorted(f))
                      for d, _, f in os.walk(brick) if "/.glusterfs" not in d + "/")
    wait_until(lambda: tree(bricks[0]) == tree(bricks[1]), 90, 0.5)


def test_sr_stays_usable_with_one_brick_killed(pool, sr, gluster_env, bricks_restored):
    volume = gluster_env["SRKIT_GLUSTER_VOLUME"]
    vdi = pool.vdi_create(sr.ref, 16 * MiB, name_label="survivor")
    uuid = sr.uuid_of(vdi)
    dev = pool.vdi_attach(vdi)["params"]
    before = os.urandom(MiB)
    fd = os.open(dev, os.O_RDWR)
    try:
        os.pwrite(fd, before, 0)
        os.fsync(fd)
        pids = brick_pids(gluster_env, volume)
        dead_brick = sr.bricks[0]
        os.kill(pids[dead_brick], signal.SIGKILL)
        assert wait_until(lambda: dead_brick not in brick_pids(gluster_env, volume), 15)
        after = os.urandom(MiB)
        os.pwrite(fd, after, 2 * MiB)   # mid-test, through the attached device
        os.fsync(fd)
        assert os.pread(fd, MiB, 0) == before
    finally:
        os.close(fd)
    # the control path too: snapshot and a new VDI land on the surviving brick
    snap = pool.vdi_snapshot(vdi)
    other = pool.vdi_create(sr.ref, MiB, name_label="made while degraded")
    alive = sr.bricks[1]
    with open(os.path.join(alive, sr.uuid, uuid + ".raw"), "rb") as f:
        f.seek(2 * MiB)
        assert f.read(MiB) == after
    assert os.path.exists(os.path.join(alive, sr.uuid, sr.uuid_of(snap) + ".raw"))
    assert os.path.exists(os.path.join(alive, sr.uuid, sr.uuid_of(other) + ".raw"))
    assert not os.path.exists(os.path.join(dead_brick, sr.uuid, sr.uuid_of(other) + ".raw"))
    pool.sr_scan(sr.ref)
    assert len(pool.db.get("SR", sr.ref)["VDIs"]) == 3
    pool.vdi_detach(vdi)


@pytest.fixture
def glusterd_restored(gluster_env):
    yield
    pid = _glusterd_pid(gluster_env)
    try:
        os.kill(pid, signal.SIGCONT)
    except OSError:
        pass
    if gluster_cli(gluster_env, "volume", "list", timeout=30).returncode != 0:
        _start_glusterd(gluster_env)


def test_hung_glusterd_faults_within_the_mount_timeout(make_sr, pool, gluster_env,
                                                      glusterd_restored):
    sr = make_sr(mount_timeout="6")
    h1 = pool.hosts[1]
    pbd = pool.db.find("PBD", SR=sr.ref, host=h1)[0]
    pool.pbd_unplug(pbd)
    os.kill(_glusterd_pid(gluster_env), signal.SIGSTOP)   # accepts connections, answers nothing
    start = time.monotonic()
    with pytest.raises(XapiError) as e:
        pool.pbd_plug(pbd)
    took = time.monotonic() - start
    assert e.value.code == "SR_BACKEND_FAILURE_47"
    assert took < 20, "sr_attach took %.1f s with a mount timeout of 6 s" % took
    assert mounts_at(sr.mountpoint(h1)) == []
    assert _client_processes(sr.mountpoint(h1)) == [], "a stuck glusterfs client was left"
    # the host that has the volume mounted keeps working: data goes to the bricks directly
    vdi = pool.vdi_create(sr.ref, MiB, name_label="glusterd hung")
    assert os.path.exists(sr.brick_file(sr.uuid_of(vdi)))
    os.kill(_glusterd_pid(gluster_env), signal.SIGCONT)
    pool.pbd_plug(pbd)
    assert len(mounts_at(sr.mountpoint(h1))) == 1


def test_stopped_glusterd_faults_at_once(make_sr, pool, gluster_env, glusterd_restored):
    sr = make_sr()
    h1 = pool.hosts[1]
    pbd = pool.db.find("PBD", SR=sr.ref, host=h1)[0]
    pool.pbd_unplug(pbd)
    pid = _glusterd_pid(gluster_env)
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: gluster_cli(gluster_env, "volume", "list",
                                          timeout=10).returncode != 0, 15)
    start = time.monotonic()
    with pytest.raises(XapiError) as e:
        pool.pbd_plug(pbd)
    assert e.value.code == "SR_BACKEND_FAILURE_47"
    assert time.monotonic() - start < 10
    with pytest.raises(XapiError) as e:
        pool.sr_probe("gluster", {"server": "127.0.0.1:/" + gluster_env["SRKIT_GLUSTER_VOLUME"]})
    assert e.value.code == "SR_BACKEND_FAILURE_47"
    _start_glusterd(gluster_env)
    pool.pbd_plug(pbd)
    assert len(mounts_at(sr.mountpoint(h1))) == 1
