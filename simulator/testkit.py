"""What every backend's tests need around the simulated pool: bytes in and out of an
attached VDI, a pool that detaches everything when a test ends, and a safety net for the
loop devices, mounts and servers a failed test left behind. Tooling, never imported by a
driver."""
import contextlib
import os
import signal
import subprocess
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SM_DIR = os.path.join(REPO, "sm_drivers")


def write_at(path, offset, data):
    """Write all of data at offset and fsync: on a block device it has reached the VDI."""
    fd = os.open(path, os.O_WRONLY)
    try:
        view = memoryview(data)
        while view:
            done = os.pwrite(fd, view, offset)
            view, offset = view[done:], offset + done
        os.fsync(fd)
    finally:
        os.close(fd)


def read_at(path, offset, length):
    """length bytes at offset, fewer only at the end of the device."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while length > 0:
            chunk = os.pread(fd, length, offset)
            if not chunk:
                break
            chunks.append(chunk)
            offset += len(chunk)
            length -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class RecordingLog(object):
    """The log of a driver run in-process by a test: keeps what it is told, so a test
    can assert on it, and prints nothing."""

    def __init__(self):
        self.infos = []
        self.errors = []

    def info(self, msg):
        self.infos.append(msg)

    def error(self, msg):
        self.errors.append(msg)


def driver_context(state_dir, is_master=True):
    """A driver Context for calling a driver's primitives directly, without xapi."""
    from framework.driver import Context
    return Context(str(state_dir), RecordingLog(), is_master)


def wait_until(predicate, timeout=10.0, step=0.1):
    """predicate's first true value within timeout, else its last value."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def detach_all(pool, unplug=False):
    """Detach every VDI a test left attached (and unplug every PBD): the backend's
    datapaths stop the way xapi would stop them."""
    for _, dp in list(pool.db.all("datapath")):
        try:
            pool.vdi_detach(dp["VDI"], host=dp["host"])
        except Exception:
            pass
    for ref, _ in list(pool.db.all("PBD")) if unplug else ():
        try:
            pool.pbd_unplug(ref)
        except Exception:
            pass


@contextlib.contextmanager
def sim_pool(root, hosts=1, unplug=False):
    """A simulated pool running this tree's sm_drivers, emptied of datapaths at the end."""
    from simulator import Pool
    with Pool(root, sm_dir=SM_DIR, hosts=hosts) as p:
        try:
            yield p
        finally:
            detach_all(p, unplug)


def cleanup_datapaths(root, servers=()):
    """Safety net after detach_all: loop devices backed by files under root, mounts under
    root (innermost first), and processes whose argv names root and whose program is one
    of `servers` (bytes contained in one of argv's first three words)."""
    root_b = root.encode()
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
        if subprocess.run(["umount", m], capture_output=True).returncode:
            subprocess.run(["umount", "-l", m], capture_output=True)
    for pid, argv in processes() if servers else ():
        if any(a.startswith(root_b) for a in argv[1:]) and \
                any(s in a for s in servers for a in argv[:3]):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def processes():
    """(pid, argv as bytes) of every process still there when its turn comes."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        yield int(pid), argv


@contextlib.contextmanager
def sr_maker(pool, sr_type, device_config, wrap, **create):
    """make(**overrides): a new SR of sr_type on device_config updated by overrides (an
    override None drops the key), as wrap(ref, dc). At the end every datapath is detached
    and each SR's purge() removes what its test left in the backend."""
    made = []

    def make(**overrides):
        dc = dict(device_config)
        dc.update(overrides)
        dc = dict((k, v) for k, v in dc.items() if v is not None)
        sr = wrap(pool.sr_create(sr_type, dc, **create), dc)
        made.append(sr)
        return sr
    try:
        yield make
    finally:
        detach_all(pool)
        for sr in made:
            sr.purge()
