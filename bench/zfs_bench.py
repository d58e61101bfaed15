"""zfsvol benchmark on real OpenZFS; run it inside the guest of tests/rigs/zfs.sh:

    tests/rigs/zfs.sh run -- /usr/bin/python3 bench/zfs_bench.py [--quick] [--vdis 500]

Absolute times in an emulated (TCG) guest mean little; this prints ratios measured in
one run (medians):
  1. vdi_snapshot / vdi_clone through the driver (spawn -> reply, as xapi runs it) vs
     the raw ``zfs snapshot`` / ``zfs clone`` command and vs a minimal one-shot python
     process doing the same through pyzfs (libzfs_core).
  2. snapshot latency of a 1 TiB vs a 1 GiB sparse zvol (goal <= 1.2), and with
     500 vs 10 zvols in the SR (goal <= 1.5).
  3. sr_scan with 500 zvols vs one ``zfs list -t all -Hp -o ...`` of the same dataset
     (goal: the scan costs at most 2 such listings plus a spawn).
Runs under /usr/bin/python3 (pyzfs is a Debian package of the system python).
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB
SYS_PY = "/usr/bin/python3"
POOL = "srkbench"


def median(xs):
    return statistics.median(xs)


def ms(x):
    return "%.0f ms" % (x * 1000)


def timed(argv):
    t = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t


def driver_call(pool, command, vdi):
    pool.call(command, vdi=vdi, driver_params={})
    return pool.last_call.seconds


ONE_SHOT = """
import sys, libzfs_core as z
if sys.argv[1] == 'snap':
    z.lzc_snapshot([sys.argv[2].encode()])
else:
    z.lzc_clone(sys.argv[3].encode(), sys.argv[2].encode())
"""


LIST_SCRIPT = """
import sys
sys.path.insert(0, %r)
from framework.driver import Context
from drivers.zfs.driver import ZFSVolDriver
class Log(object):
    def info(self, m): pass
    error = info
d = ZFSVolDriver(%r, {'pool': %r, 'api': 'auto'}, Context(%r, Log(), True))
print(len(d.list()))
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="3 repetitions, 100 zvols")
    ap.add_argument("--vdis", type=int, default=500)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args()
    n = 3 if args.quick else args.reps
    many = 100 if args.quick else args.vdis
    from simulator import Pool
    work = tempfile.mkdtemp(prefix="zfs-bench-")
    disk = os.environ.get("SRKIT_ZFS_DISK")
    if not disk:
        disk = os.path.join(work, "disk.img")
        with open(disk, "wb") as f:
            f.truncate(4 * GiB)
    subprocess.run(["zpool", "create", "-f", "-o", "cachefile=none", POOL, disk], check=True)
    rows = []
    try:
        pool = Pool(os.path.join(work, "pool"), sm_dir=os.path.join(REPO, "sm_drivers"))
        sr = pool.sr_create("zfsvol", {"pool": POOL}, name_label="bench")
        sr_ds = "%s/%s" % (POOL, pool.sr_record(sr)["uuid"])
        spawn = median([timed([SYS_PY, "-c", "pass"]) for _ in range(n)])
        rows.append(("bare /usr/bin/python3 spawn", ms(spawn), ""))

        # 1. driver vs raw zfs command vs one-shot pyzfs process
        subprocess.run(["zfs", "create", "-s", "-V", str(GiB), POOL + "/raw"], check=True)
        raw_snap = median([timed(["zfs", "snapshot", "%s/raw@s%d" % (POOL, i)])
                           for i in range(n)])
        raw_clone = median([timed(["zfs", "clone", "%s/raw@s%d" % (POOL, i),
                                   "%s/rawc%d" % (POOL, i)]) for i in range(n)])
        py_snap = median([timed([SYS_PY, "-c", ONE_SHOT, "snap", "%s/raw@p%d" % (POOL, i)])
                          for i in range(n)])
        py_clone = median([timed([SYS_PY, "-c", ONE_SHOT, "clone", "%s/raw@p%d" % (POOL, i),
                                  "%s/pyc%d" % (POOL, i)]) for i in range(n)])
        g1 = pool.vdi_create(sr, GiB, name_label="1GiB")
        drv_snap = median([driver_call(pool, "vdi_snapshot", g1) for _ in range(n)])
        drv_clone = median([driver_call(pool, "vdi_clone", g1) for _ in range(n)])
        rows.append(("raw `zfs snapshot`", ms(raw_snap), ""))
        rows.append(("one-shot python + lzc_snapshot", ms(py_snap), ""))
        rows.append(("driver vdi_snapshot (spawn->reply)", ms(drv_snap),
                     "x%.2f raw cmd, x%.2f one-shot pyzfs" % (drv_snap / raw_snap,
                                                              drv_snap / py_snap)))
        rows.append(("raw `zfs clone`", ms(raw_clone), ""))
        rows.append(("one-shot python + lzc_clone", ms(py_clone), ""))
        rows.append(("driver vdi_clone (spawn->reply)", ms(drv_clone),
                     "x%.2f raw cmd, x%.2f one-shot pyzfs" % (drv_clone / raw_clone,
                                                              drv_clone / py_clone)))

        # 2a. 1 TiB vs 1 GiB sparse zvol
        g1b = pool.vdi_create(sr, GiB, name_label="1GiB-b")
        t1 = pool.vdi_create(sr, TiB, name_label="1TiB")
        s_g, s_t = [], []
        for _ in range(n):   # interleaved, so machine noise hits both alike
            s_g.append(driver_call(pool, "vdi_snapshot", g1b))
            s_t.append(driver_call(pool, "vdi_snapshot", t1))
        rows.append(("snapshot 1 GiB / 1 TiB zvol", "%s / %s" % (ms(median(s_g)), ms(median(s_t))),
                     "ratio %.2f (goal <= 1.2)" % (median(s_t) / median(s_g))))

        # 2b. 10 vs many zvols in the SR
        sr10 = pool.sr_create("zfsvol", {"pool": POOL}, name_label="bench-10")
        ten = [pool.vdi_create(sr10, GiB, name_label="t%d" % i) for i in range(10)]
        s10 = median([driver_call(pool, "vdi_snapshot", ten[0]) for _ in range(n)])
        have = len(pool.sr_record(sr)["VDIs"])
        t = time.monotonic()
        # fillers made in-process by libzfs_core (volmode=none: no device nodes for
        # udev to process; the dataset count is what matters here)
        import libzfs_core as z
        from drivers.zfs import layout as L
        from framework import meta as m
        for i in range(many - have):
            uuid = _uuid()
            z.lzc_create(("%s/%s" % (sr_ds, uuid)).encode(), "zvol",
                         {b"volsize": GiB, b"volblocksize": 16384, b"volmode": 3,
                          b"srkit:meta": L.encode_meta(uuid, m.new("f%d" % i)).encode()})
        fill = time.monotonic() - t
        pool.sr_scan(sr)
        nvol = len(pool.sr_record(sr)["VDIs"])
        s_many = median([driver_call(pool, "vdi_snapshot", g1) for _ in range(n)])
        rows.append(("snapshot in SR with 10 / %d VDIs" % nvol, "%s / %s" % (ms(s10), ms(s_many)),
                     "ratio %.2f (goal <= 1.5)" % (s_many / s10)))
        rows.append(("(filling %d zvols by lzc_create)" % (many - have), "%.0f s" % fill, ""))

        # 3. sr_scan vs one zfs list of the same dataset
        listing = median([timed(["zfs", "list", "-t", "all", "-r", "-Hp", "-o",
                                 ",".join(L.LIST_PROPS), sr_ds]) for _ in range(n)])
        nrows = subprocess.run(["zfs", "list", "-t", "all", "-r", "-H", "-o", "name", sr_ds],
                               check=True, capture_output=True).stdout.count(b"\n")
        scans = []
        for _ in range(n):
            pool.sr_scan(sr)
            scans.append(pool.last_call.seconds)
        scan = median(scans)
        goal = 2 * listing + spawn
        code = LIST_SCRIPT % (REPO, pool.sr_record(sr)["uuid"], POOL, work)
        lists = median([timed([SYS_PY, "-c", code]) for _ in range(n)])
        rows.append(("one `zfs list -t all -Hp` of the SR (%d rows)" % nrows, ms(listing), ""))
        rows.append(("sr_scan spawn->reply, %d VDIs known to xapi" % nvol, ms(scan),
                     "= %.2f listings + %.2f spawns; goal <= 2 listings + spawn = %s: %s" % (
                         (scan - spawn) / listing, scan / spawn, ms(goal),
                         "OK" if scan <= goal else "MISS")))
        rows.append(("driver side alone: spawn + import + list()", ms(lists),
                     "goal <= %s: %s" % (ms(goal), "OK" if lists <= goal else "MISS")))
    finally:
        width = max(len(r[0]) for r in rows) if rows else 10
        print()
        for name, value, note in rows:
            print("%-*s  %18s  %s" % (width, name, value, note))
        subprocess.run(["zpool", "destroy", "-f", POOL])


def _uuid():
    from framework.new_values import new_uuid
    return new_uuid()


if __name__ == "__main__":
    main()
