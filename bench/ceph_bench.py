"""RBD driver benchmark on a real Ceph cluster (tests/rigs/ceph.sh up + env).

    eval "$(tests/rigs/ceph.sh env DIR)"; python3 bench/ceph_bench.py [--quick]

Measures, in one run (medians):
  1. vdi_snapshot / vdi_clone through the driver (spawn -> reply, as xapi runs it)
     vs the raw librbd operation and a bare python spawn;
     goal: driver <= raw + 2 x bare spawn.
  2. snapshot latency on a 1 TiB vs a 1 GiB thin image (goal ratio <= 1.2) and in
     an SR with 500 vs 10 VDIs (goal ratio <= 1.5).
  3. sr_scan with 500 and 1000 VDIs (goal <= 2 s at 1000): the driver's list()
     alone, and sr_scan through the simulator once xapi knows the VDIs.
  4. sequential write/read through the attached block device vs librbd.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB
SYS_PY = "/usr/bin/python3"


def median(xs):
    return statistics.median(xs)


def ms(x):
    return "%.1f ms" % (x * 1000)


class Log(object):
    def info(self, msg):
        pass

    error = info


def device_config():
    e = os.environ
    return {"monitors": e["SRKIT_CEPH_MONITORS"], "user": e["SRKIT_CEPH_USER"],
            "key": e["SRKIT_CEPH_KEY"], "pool": e.get("SRKIT_CEPH_POOL", "rbd"),
            "datapath": "fuse"}


def bare_spawn(n):
    times = []
    for _ in range(n):
        t = time.monotonic()
        subprocess.run([SYS_PY, "-c", "pass"], check=True)
        times.append(time.monotonic() - t)
    return median(times)


def driver_call(pool, command, vdi):
    pool.call(command, vdi=vdi, driver_params={})
    return pool.last_call.seconds


def timed_snapshots(pool, vdi, n):
    return median([driver_call(pool, "vdi_snapshot", vdi) for _ in range(n)])


def raw_ops(io, n):
    import rbd
    name = "bench-raw-%d" % os.getpid()
    rbd.RBD().create(io, name, GiB, old_format=False, features=1 | 4 | 8 | 16 | 32)
    snaps, clones = [], []
    with rbd.Image(io, name) as img:
        for i in range(n):
            t = time.monotonic()
            img.create_snap("s%d" % i)
            snaps.append(time.monotonic() - t)
        for i in range(n):
            t = time.monotonic()
            img.create_snap("c%d" % i)
            img.protect_snap("c%d" % i)
            rbd.RBD().clone(io, name, "c%d" % i, io, "%s-c%d" % (name, i),
                            features=1 | 4 | 8 | 16 | 32)
            clones.append(time.monotonic() - t)
    for i in range(n):
        rbd.RBD().remove(io, "%s-c%d" % (name, i))
    with rbd.Image(io, name) as img:
        for s in list(img.list_snaps()):
            if img.is_protected_snap(s["name"]):
                img.unprotect_snap(s["name"])
            img.remove_snap(s["name"])
    rbd.RBD().remove(io, name)
    return median(snaps), median(clones)


FRESH_SNAP = """
import os, sys, time, rados, rbd
c = rados.Rados(rados_id=%r, conffile=None, conf={'mon_host': %r, 'key': %r,
                'admin_socket': '', 'log_to_stderr': 'false'})
c.connect(timeout=10)
io = c.open_ioctx(%r)
io.set_namespace(%r)
with rbd.Image(io, %r) as img:
    t = time.monotonic()
    img.create_snap('fresh-%%d' %% os.getpid())
    sys.stdout.write('%%f' %% (time.monotonic() - t))
"""


def fresh_process_snaps(dc, namespace, image, n):
    """(create_snap alone, whole process) when create_snap is a process's first op:
    what any one-process-per-call design pays."""
    code = FRESH_SNAP % (dc["user"], dc["monitors"], dc["key"], dc["pool"], namespace, image)
    inner, outer = [], []
    for _ in range(n):
        t = time.monotonic()
        out = subprocess.run([SYS_PY, "-c", code], check=True, stdout=subprocess.PIPE).stdout
        outer.append(time.monotonic() - t)
        inner.append(float(out))
    return median(inner), median(outer)


def fill(driver, count, size=GiB, threads=8):
    from framework import meta as m
    from framework.new_values import new_uuid

    def one(i):
        uuid = new_uuid()
        driver.create(uuid, size, m.new("bulk %d" % i))
        return uuid
    with ThreadPoolExecutor(threads) as ex:
        return list(ex.map(one, range(count)))


SCAN_SCRIPT = """
import sys, time, json
sys.path.insert(0, %r)
from framework.driver import Context
from drivers.ceph.driver import RBDDriver
class Log(object):
    def info(self, m): pass
    error = info
d = RBDDriver(%r, json.loads(%r), Context(%r, Log(), True))
print(len(d.list()))
"""


def scan_process(sr_uuid, dc):
    """spawn -> list() done, as a driver process pays it (without xapi's reconcile)."""
    import json
    code = SCAN_SCRIPT % (REPO, sr_uuid, json.dumps(dc), tempfile.gettempdir())
    t = time.monotonic()
    subprocess.run([SYS_PY, "-c", code], check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def seq_io(pool, sr, io, size):
    import rbd
    v = pool.vdi_create(sr, size, name_label="seq")
    dev = pool.vdi_attach(v)["params"]
    block = 4 * MiB
    buf = os.urandom(block)
    import mmap
    aligned = mmap.mmap(-1, block)
    aligned.write(buf)
    fd = os.open(dev, os.O_RDWR | os.O_DIRECT)
    t = time.monotonic()
    for off in range(0, size, block):
        os.pwritev(fd, [aligned], off)
    os.fsync(fd)
    w_dev = size / (time.monotonic() - t) / MiB
    t = time.monotonic()
    for off in range(0, size, block):
        os.preadv(fd, [aligned], off)
    r_dev = size / (time.monotonic() - t) / MiB
    os.close(fd)
    pool.vdi_detach(v)
    name = "bench-seq-%d" % os.getpid()
    rbd.RBD().create(io, name, size, old_format=False, features=1 | 4 | 8 | 16 | 32)
    with rbd.Image(io, name) as img:
        t = time.monotonic()
        for off in range(0, size, block):
            img.write(buf, off)
        img.flush()
        w_rbd = size / (time.monotonic() - t) / MiB
        t = time.monotonic()
        for off in range(0, size, block):
            img.read(off, block)
        r_rbd = size / (time.monotonic() - t) / MiB
    rbd.RBD().remove(io, name)
    pool.vdi_destroy(v)
    return w_dev, r_dev, w_rbd, r_rbd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, 200/400 VDIs")
    ap.add_argument("--seq-mib", type=int, default=512)
    args = ap.parse_args()
    if not os.environ.get("SRKIT_CEPH_CONF"):
        sys.exit("no cluster: eval \"$(tests/rigs/ceph.sh env DIR)\" first")
    import rados
    from simulator import Pool
    from framework.driver import Context
    from drivers.ceph.driver import RBDDriver
    n = 5 if args.quick else 11
    big, huge = (200, 400) if args.quick else (500, 1000)
    rows = []
    work = tempfile.mkdtemp(prefix="ceph-bench-")
    cluster = rados.Rados(conffile=os.environ["SRKIT_CEPH_CONF"])
    cluster.connect(timeout=10)
    io = cluster.open_ioctx(device_config()["pool"])
    pool = Pool(os.path.join(work, "pool"), hosts=1)
    dc = device_config()
    sr = pool.sr_create("rbd", dc, name_label="bench", shared=True)
    sr_uuid = pool.sr_record(sr)["uuid"]
    driver = RBDDriver(sr_uuid, dict(dc), Context(work, Log(), True))
    try:
        # 1. driver vs raw vs spawn
        spawn = bare_spawn(n)
        raw_snap, raw_clone = raw_ops(io, n)
        small = pool.vdi_create(sr, GiB, name_label="1GiB")
        drv_snap = timed_snapshots(pool, small, n)
        drv_clone = median([driver_call(pool, "vdi_clone", small) for _ in range(n)])
        fresh_inner, fresh_outer = fresh_process_snaps(dc, sr_uuid, pool.vdi_record(small)["uuid"], n)
        rows.append(("bare /usr/bin/python3 spawn", ms(spawn), ""))
        rows.append(("raw create_snap as a fresh process' 1st op", ms(fresh_inner), ""))
        rows.append(("raw python+import+connect+open+create_snap", ms(fresh_outer),
                     "a minimal one-shot librbd process"))
        rows.append(("raw librbd create_snap", ms(raw_snap), ""))
        rows.append(("driver vdi_snapshot (spawn->reply)", ms(drv_snap),
                     "goal <= %s: %s" % (ms(raw_snap + 2 * spawn),
                                         "OK" if drv_snap <= raw_snap + 2 * spawn else "MISS")))
        rows.append(("raw librbd snap+protect+clone", ms(raw_clone), ""))
        rows.append(("driver vdi_clone (spawn->reply)", ms(drv_clone),
                     "goal <= %s: %s" % (ms(raw_clone + 2 * spawn),
                                         "OK" if drv_clone <= raw_clone + 2 * spawn else "MISS")))
        # 2a. 1 TiB vs 1 GiB (fresh images, same number of snapshots taken)
        g1 = pool.vdi_create(sr, GiB, name_label="1GiB")
        large = pool.vdi_create(sr, TiB, name_label="1TiB")
        s_small = timed_snapshots(pool, g1, n)
        s_large = timed_snapshots(pool, large, n)
        rows.append(("snapshot 1 GiB / 1 TiB image", "%s / %s" % (ms(s_small), ms(s_large)),
                     "ratio %.2f (goal <= 1.2)" % (s_large / s_small)))
        # 2b. 10 vs 500 VDIs (the other VDIs exist on the backend; xapi needs to know
        # only the one snapshotted)
        sr10 = pool.sr_create("rbd", dc, name_label="bench-10", shared=True)
        ten = pool.vdi_create(sr10, GiB, name_label="ten")
        for i in range(9):
            pool.vdi_create(sr10, GiB, name_label="t%d" % i)
        s10 = timed_snapshots(pool, ten, n)
        driver.list()
        t = time.monotonic()
        made = fill(driver, big - len(driver.list()))
        fill_s = time.monotonic() - t
        probe = pool.vdi_create(sr, GiB, name_label="probe")
        nvdi = len(driver.list())
        s500 = timed_snapshots(pool, probe, n)
        rows.append(("snapshot in SR with 10 / %d VDIs" % nvdi, "%s / %s" % (ms(s10), ms(s500)),
                     "ratio %.2f (goal <= 1.5)" % (s500 / s10)))
        rows.append(("(filling: driver.create x%d in-process, 8 threads)" % len(made),
                     "%.1f s" % fill_s, ""))
        # 3. scan: the driver's side of sr_scan (xapi's reconcile is the framework's)
        for count in (big, huge):
            have = len(driver.list())
            if have < count:
                fill(driver, count - have)
            lists = []
            for _ in range(3):
                t = time.monotonic()
                vols = driver.list()
                lists.append(time.monotonic() - t)
            procs = [scan_process(sr_uuid, dc) for _ in range(3)]
            rows.append(("scan %d VDIs: driver list() in-process" % len(vols),
                         ms(median(lists)), ""))
            rows.append(("scan %d VDIs: spawn+import+connect+list()" % len(vols),
                         ms(median(procs)),
                         "goal <= 2 s at 1000: %s" % ("OK" if median(procs) <= 2 else "MISS")
                         if len(vols) >= 1000 else ""))
        # the whole sr_scan through the simulator on the big SR: the first one introduces
        # every VDI into xapi, the second finds xapi in sync (auto-scan's steady state)
        nvols = len(driver.list())
        pool.sr_scan(sr)
        first = pool.last_call.seconds
        pool.sr_scan(sr)
        steady = pool.last_call.seconds
        rows.append(("sr_scan spawn->reply, %d VDIs: first / steady" % nvols,
                     "%.2f s / %.2f s" % (first, steady),
                     "goal <= 2 s at 1000: %s" % ("OK" if steady <= 2 else "MISS")
                     if nvols >= 1000 else ""))
        # sr_scan through the simulator with xapi already knowing every VDI it lists
        t = time.monotonic()
        pool.sr_scan(sr10)
        rows.append(("sr_scan spawn->reply, 10+%d VDIs known to xapi" % n,
                     ms(pool.last_call.seconds), ""))
        # 4. sequential I/O
        w_dev, r_dev, w_rbd, r_rbd = seq_io(pool, sr10, io, args.seq_mib * MiB)
        rows.append(("seq write %d MiB: device (fuse+loop) / librbd" % args.seq_mib,
                     "%.0f / %.0f MiB/s" % (w_dev, w_rbd), "4 MiB blocks, O_DIRECT on device"))
        rows.append(("seq read  %d MiB: device (fuse+loop) / librbd" % args.seq_mib,
                     "%.0f / %.0f MiB/s" % (r_dev, r_rbd), ""))
    finally:
        width = max(len(r[0]) for r in rows) if rows else 10
        print()
        for name, value, note in rows:
            print("%-*s  %20s  %s" % (width, name, value, note))
        cleanup(pool, sr, cluster)
        io.close()
        cluster.shutdown()


def cleanup(pool, sr, cluster):
    import rbd
    sys.path.insert(0, os.path.join(REPO, "tests", "ceph"))
    from namespace_cleanup import empty_namespace
    for ref in [r for r in pool.db.refs("SR")]:
        uuid = pool.sr_record(ref)["uuid"]
        io = cluster.open_ioctx(device_config()["pool"])
        io.set_namespace(uuid)
        empty_namespace(io, rounds=3)
        io.close()
        root = cluster.open_ioctx(device_config()["pool"])
        try:
            rbd.RBD().namespace_remove(root, uuid)
        except rbd.Error:
            pass
        root.close()


if __name__ == "__main__":
    main()
