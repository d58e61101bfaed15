"""Sequential throughput of rbd's kernel datapaths vs `rbd bench`, in the guest.

    bash tests/rigs/guest.sh run -- .venv/bin/python bench/rbd_kernel_bench.py [--size MiB]

Starts a single-node Ceph inside the guest (tests/hostpath/rbd_guest.py: memstore OSD,
no mgr), then for each of rbd-nbd (/dev/nbdN) and krbd (/dev/rbdN): a VDI of --size
MiB (512) attached through the driver, written then read sequentially through the
device (O_DIRECT, 4 MiB blocks, --threads in flight), and `rbd bench` on the same
image with the same block size and queue depth. Prints MiB/s and the ratio
device / rbd bench (goal >= 0.7). Under TCG only the ratios mean anything.
"""
import argparse
import mmap
import os
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "hostpath"))

MiB = 1024 * 1024
BLOCK = 4 * MiB


def device_io(dev, size, threads, write):
    """MiB/s of a sequential pass over dev: block-sized O_DIRECT I/O, ``threads`` in flight."""
    offsets = list(range(0, size, BLOCK))
    lock = threading.Lock()

    def worker():
        buf = mmap.mmap(-1, BLOCK)
        buf.write(os.urandom(BLOCK))
        fd = os.open(dev, (os.O_RDWR if write else os.O_RDONLY) | os.O_DIRECT)
        try:
            while True:
                with lock:
                    if not offsets:
                        return
                    off = offsets.pop(0)
                if write:
                    os.pwritev(fd, [buf], off)
                else:
                    os.preadv(fd, [buf], off)
        finally:
            os.close(fd)
    t = time.monotonic()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    if write:
        fd = os.open(dev, os.O_RDWR)
        os.fsync(fd)
        os.close(fd)
    return size / (time.monotonic() - t) / MiB


def rbd_bench(env, spec, size, threads, io_type):
    """MiB/s that `rbd bench` reports for a sequential pass of ``size`` bytes."""
    cmd = ["rbd", "-c", env["SRKIT_CEPH_CONF"], "--id", env["SRKIT_CEPH_USER"], "bench",
           "--io-type", io_type, "--io-size", str(BLOCK), "--io-threads", str(threads),
           "--io-total", str(size), "--io-pattern", "seq", spec]
    t = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.monotonic() - t
    units = {"B/s": 1.0 / MiB, "KiB/s": 1.0 / 1024, "MiB/s": 1.0, "GiB/s": 1024.0}
    for line in out.splitlines():   # "elapsed: 26   ops: 128   ops/sec: 4.8   bytes/sec: 19 MiB/s"
        if line.startswith("elapsed:") and "bytes/sec:" in line:
            value = line.split("bytes/sec:")[1].split()
            if len(value) > 1 and value[1] in units:
                return float(value[0]) * units[value[1]]
    return size / wall / MiB


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512, help="MiB per pass (512)")
    ap.add_argument("--threads", type=int, default=16, help="I/Os in flight (rbd bench's default)")
    args = ap.parse_args()
    size = args.size * MiB
    from rbd_guest import ceph_cluster, kernel_datapaths
    from simulator.testkit import sim_pool
    reason = kernel_datapaths()
    if reason:
        sys.exit(reason)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ceph_cluster(os.path.join(tmp, "ceph")) as env:
        dc = {"monitors": env["SRKIT_CEPH_MONITORS"], "user": env["SRKIT_CEPH_USER"],
              "key": env["SRKIT_CEPH_KEY"], "pool": env["SRKIT_CEPH_POOL"]}
        with sim_pool(os.path.join(tmp, "pool")) as pool:
            for datapath in ("nbd", "krbd"):
                sr = pool.sr_create("rbd", dict(dc, datapath=datapath), name_label=datapath)
                sr_uuid = pool.sr_record(sr)["uuid"]
                v = pool.vdi_create(sr, size, name_label="bench")
                spec = "%s/%s/%s" % (dc["pool"], sr_uuid, pool.vdi_record(v)["uuid"])
                dev = pool.vdi_attach(v)["params"]
                w_dev = device_io(dev, size, args.threads, True)
                r_dev = device_io(dev, size, args.threads, False)
                pool.vdi_detach(v)
                w_rbd = rbd_bench(env, spec, size, args.threads, "write")
                r_rbd = rbd_bench(env, spec, size, args.threads, "read")
                rows.append((datapath, dev, w_dev, w_rbd, r_dev, r_rbd))
                pool.vdi_destroy(v)
                for pbd in pool.sr_record(sr)["PBDs"]:
                    pool.pbd_unplug(pbd)
                pool.sr_destroy(sr)
    print("%d MiB sequential, %d KiB blocks, %d in flight; MiB/s" % (
        args.size, BLOCK // 1024, args.threads))
    print("%-6s %-11s %9s %9s %6s %9s %9s %6s" % ("path", "device", "write", "rbd bench",
                                                 "ratio", "read", "rbd bench", "ratio"))
    for datapath, dev, w_dev, w_rbd, r_dev, r_rbd in rows:
        print("%-6s %-11s %9.1f %9.1f %6.2f %9.1f %9.1f %6.2f" % (
            datapath, dev, w_dev, w_rbd, w_dev / w_rbd, r_dev, r_rbd, r_dev / r_rbd))


if __name__ == "__main__":
    main()
