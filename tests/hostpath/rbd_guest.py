"""Helpers of the guest's rbd suites: where the kernel datapaths stand (Ceph's and the
kernel's own view, never the driver's), and the safety net for what a failed test
left mapped."""
import contextlib
import os
import signal
import subprocess

from simulator.testkit import processes, wait_until

CEPH_RIG = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "rigs", "ceph.sh")

RBD_DEVICES = "/sys/bus/rbd/devices"
MiB = 1024 * 1024


def kernel_datapaths():
    """'' where nbd.ko and rbd.ko are loaded (the guest); else why the tests skip."""
    if not (os.path.isdir("/sys/module/nbd") and os.path.exists("/sys/bus/rbd/add_single_major")):
        return "no nbd/rbd kernel modules: runs in the guest (tests/rigs/guest.sh run -- ...)"
    return ""


def pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def krbd_devices():
    """{id: config_info} of every krbd mapping of this kernel."""
    out = {}
    for dev in os.listdir(RBD_DEVICES) if os.path.isdir(RBD_DEVICES) else ():
        with open(os.path.join(RBD_DEVICES, dev, "config_info")) as f:
            out[dev] = f.read().strip()
    return out


def nbd_server(device):
    """The pid serving /dev/nbdN, 0 when it is not connected."""
    try:
        with open("/sys/block/%s/pid" % os.path.basename(device)) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def rbd_nbd_daemons():
    return [pid for pid, argv in processes() if argv and argv[0].endswith(b"rbd-nbd")]


def mapped(device):
    """Whether the kernel still serves ``device`` (/dev/nbdN or /dev/rbdN)."""
    name = os.path.basename(device)
    if name.startswith("nbd"):
        return nbd_server(device) != 0
    return os.path.isdir(os.path.join(RBD_DEVICES, name[len("rbd"):]))


def device_size(device):
    with open("/sys/block/%s/size" % os.path.basename(device)) as f:
        return int(f.read()) * 512


def read_only(device):
    with open("/sys/block/%s/ro" % os.path.basename(device)) as f:
        return f.read().strip() == "1"


def unmapped_soon(device, timeout=10):
    return wait_until(lambda: not mapped(device), timeout)


def unmap_everything():
    """The safety net: every rbd-nbd daemon and krbd mapping of the guest goes (the
    tests own them all: nothing else maps RBD images here). Returns what it found."""
    found = []
    for pid in rbd_nbd_daemons():
        found.append("rbd-nbd %d" % pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    for dev in krbd_devices():
        found.append("/dev/rbd%s" % dev)
        subprocess.run(["sh", "-c", "echo '%s force' > /sys/bus/rbd/remove_single_major" % dev],
                       capture_output=True)
    return found


@contextlib.contextmanager
def ceph_cluster(directory):
    """A single-node Ceph on this machine's loopback (tests/rigs/ceph.sh: mon + memstore
    OSD, cephx, no mgr: the guest has no disk to spare nor CPU for a mgr), its
    SRKIT_CEPH_* exported while it runs (replacing the host run's); yields them."""
    env = dict(os.environ, CEPH_OBJECTSTORE="memstore", CEPH_MGR="0", CEPH_WAIT_SCALE="10")
    try:
        up = subprocess.run(["bash", CEPH_RIG, "up", directory], env=env,
                            capture_output=True, text=True, timeout=900)
        assert up.returncode == 0, up.stdout + up.stderr
        out = subprocess.run(["bash", CEPH_RIG, "env", directory], capture_output=True,
                             text=True, check=True)
        values = {}
        for line in out.stdout.splitlines():
            name, _, value = line[len("export "):].partition("=")
            values[name] = value.strip("'")
        saved = dict((k, os.environ.get(k)) for k in values)
        os.environ.update(values)
        try:
            yield values
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        subprocess.run(["bash", CEPH_RIG, "down", directory], capture_output=True, timeout=300)
