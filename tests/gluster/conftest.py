"""Fixtures for the Gluster driver tests: a real glusterd (tests/rigs/gluster.sh up),
a simulated two-host pool running sm_drivers/GlusterSR, and Gluster's own view to
assert against: the brick directories (files, xattrs, allocation) and the CLI.

Skips cleanly unless SRKIT_GLUSTER_DIR is set (eval "$(tests/rigs/gluster.sh env DIR)").
"""
import json
import os
import subprocess
import time

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
META_XATTR = "user.srkit.meta"


@pytest.fixture(scope="session")
def gluster_env():
    if not os.environ.get("SRKIT_GLUSTER_DIR"):
        pytest.skip("no glusterd: run tests/rigs/gluster.sh up DIR and "
                    "eval \"$(tests/rigs/gluster.sh env DIR)\"")
    return {k: os.environ[k] for k in os.environ if k.startswith("SRKIT_GLUSTER_")}


def gluster_cli(env, *args, timeout=60):
    d = env["SRKIT_GLUSTER_DIR"]
    return subprocess.run(["gluster", "--mode=script", "--glusterd-sock=" + env["SRKIT_GLUSTER_SOCK"],
                           "--log-file=%s/log/cli.log" % d] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def brick_pids(env, volume):
    """{brick path: pid} of the running brick processes of ``volume``."""
    out = gluster_cli(env, "volume", "status", volume, "--xml").stdout
    import xml.etree.ElementTree as ET
    pids = {}
    for node in ET.fromstring(out).iter("node"):
        path, pid, status = node.findtext("path"), node.findtext("pid"), node.findtext("status")
        if path and path.startswith("/") and status == "1" and pid and pid != "-1":
            pids[path] = int(pid)
    return pids


def wait_until(predicate, timeout=20.0, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def _cleanup(root):
    """Safety net: loop devices and FUSE mounts a failed test left under ``root``."""
    for loop in os.listdir("/sys/block"):
        try:
            with open("/sys/block/%s/loop/backing_file" % loop) as f:
                if f.read().startswith(root):
                    subprocess.run(["losetup", "-d", "/dev/" + loop], capture_output=True)
        except OSError:
            pass
    with open("/proc/mounts") as f:
        mounts = [line.split()[1] for line in f if line.split()[1].startswith(root)]
    for m in sorted(mounts, reverse=True):
        subprocess.run(["umount", m], capture_output=True)
        subprocess.run(["umount", "-l", m], capture_output=True)


@pytest.fixture
def pool(tmp_path):
    from simulator import Pool
    root = str(tmp_path / "pool")
    with Pool(root, sm_dir=os.path.join(REPO, "sm_drivers"), hosts=2) as p:
        yield p
        for _, dp in list(p.db.all("datapath")):
            try:
                p.vdi_detach(dp["VDI"], host=dp["host"])
            except Exception:
                pass
        for ref, rec in list(p.db.all("PBD")):
            try:
                p.pbd_unplug(ref)
            except Exception:
                pass
    _cleanup(root)


class SR(object):
    """A gluster SR of the simulated pool plus Gluster's view of its directory."""

    def __init__(self, pool, ref, env, volume, bricks):
        self.pool, self.ref, self.env = pool, ref, env
        self.uuid = pool.sr_record(ref)["uuid"]
        self.volume = volume
        self.bricks = bricks

    def brick_dirs(self):
        return [os.path.join(b, self.uuid) for b in self.bricks]

    def brick_file(self, vdi_uuid, brick=0):
        return os.path.join(self.bricks[brick], self.uuid, vdi_uuid + ".raw")

    def brick_meta(self, vdi_uuid, brick=0):
        return json.loads(os.getxattr(self.brick_file(vdi_uuid, brick), META_XATTR))

    def mountpoint(self, host=None):
        host = host or self.pool.master
        d = self.pool.host_dirs(host)["state"]
        return os.path.join(d, self.uuid, "volume")

    def mount_file(self, vdi_uuid, host=None):
        return os.path.join(self.mountpoint(host), self.uuid, vdi_uuid + ".raw")

    def uuid_of(self, ref):
        return self.pool.vdi_record(ref)["uuid"]

    def purge(self):
        """Remove what a test left of the SR, through a mount of our own (Gluster's way)."""
        import shutil
        import tempfile
        m = tempfile.mkdtemp(prefix="srkit-gluster-purge-")
        try:
            subprocess.run(["mount", "-t", "glusterfs", "%s:/%s" % (
                self.env["SRKIT_GLUSTER_HOST"], self.volume), m], capture_output=True,
                timeout=60)
            if mounts_at(m):
                shutil.rmtree(os.path.join(m, self.uuid), ignore_errors=True)
        finally:
            subprocess.run(["umount", m], capture_output=True)
            os.rmdir(m)


def mounts_at(path):
    with open("/proc/mounts") as f:
        return [line.split() for line in f if line.split()[1] == path]


@pytest.fixture
def device_config(gluster_env):
    return {"server": "%s:/%s" % (gluster_env["SRKIT_GLUSTER_HOST"],
                                  gluster_env["SRKIT_GLUSTER_VOLUME"]),
            "mount_timeout": "20"}


@pytest.fixture
def make_sr(pool, gluster_env, device_config):
    made = []

    def make(volume=None, **overrides):
        volume = volume or gluster_env["SRKIT_GLUSTER_VOLUME"]
        dc = dict(device_config, server="%s:/%s" % (gluster_env["SRKIT_GLUSTER_HOST"], volume))
        dc.update(overrides)
        ref = pool.sr_create("gluster", dc, name_label="gluster", shared=True)
        bricks = gluster_env["SRKIT_GLUSTER_BRICKS"].split(":") \
            if volume == gluster_env["SRKIT_GLUSTER_VOLUME"] \
            else [gluster_env["SRKIT_GLUSTER_XFS_BRICK"]]
        sr = SR(pool, ref, gluster_env, volume, bricks)
        made.append(sr)
        return sr
    yield make
    for _, dp in list(pool.db.all("datapath")):
        try:
            pool.vdi_detach(dp["VDI"], host=dp["host"])
        except Exception:
            pass
    for ref, _ in list(pool.db.all("PBD")):
        try:
            pool.pbd_unplug(ref)
        except Exception:
            pass
    for sr in made:
        sr.purge()


@pytest.fixture
def sr(make_sr):
    return make_sr()
