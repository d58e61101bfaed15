"""The Gluster tests' own helpers (conftest.py holds their fixtures): the gluster CLI on
the rig's glusterd, brick processes, and an SR seen from its bricks."""
import json
import os
import subprocess

META_XATTR = "user.srkit.meta"


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
