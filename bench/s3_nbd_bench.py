"""s3 datapath benchmark: the kernel NBD client (/dev/nbdN) vs nbdfuse + loop, both in
front of the same NBD server and S3 server, in one run. Needs the nbd module, so it runs
in the guest of tests/rigs/zfs.sh, which it starts a SeaweedFS in (tests/rigs/s3.sh, on
the guest's loopback):

    bash tests/rigs/zfs.sh run -- .venv/bin/python bench/s3_nbd_bench.py [--size-mib 256]

For each datapath, alternating, --rounds times: sequential write of --size-mib through
the device (O_DIRECT, 4 MiB requests, then fsync: every chunk uploaded and the manifest
written) and a cold sequential read of it (a fresh read-only attach). Prints the median
MiB/s of each and the ratios kernel / fuse (goal >= 1.0). Under TCG only the ratio
means something.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "s3"))

from s3_bench import MiB, device_io, env_dc  # noqa: E402

RIG = os.path.join(REPO, "tests", "rigs", "s3.sh")


def rig_up(tmp, kinds):
    if "nbd" in kinds and not os.path.isdir("/sys/module/nbd"):
        subprocess.run(["modprobe", "nbd"], check=True)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    d = os.path.join(tmp, "rig")
    env = dict(os.environ, SRKIT_S3_PY=sys.executable)
    subprocess.run(["bash", RIG, "up", d], check=True, env=env)
    out = subprocess.run(["bash", RIG, "env", d], check=True, capture_output=True,
                         text=True, env=env).stdout
    for line in out.splitlines():
        for part in line.replace("export ", "").split():
            k, _, v = part.partition("=")
            os.environ[k] = v
    return d


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--datapaths", default="nbd,fuse", help="a subset, to try the script")
    args = ap.parse_args()
    kinds = args.datapaths.split(",")
    from simulator.testkit import sim_pool
    data = os.urandom(args.size_mib * MiB)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        rig = rig_up(tmp, kinds)
        try:
            with sim_pool(os.path.join(tmp, "pool")) as pool:
                for kind in kinds:
                    dc = dict(env_dc(tmp, "bench-%s-%s/" % (kind, os.urandom(3).hex())),
                              datapath=kind)
                    sr = pool.sr_create("s3", dc, name_label=kind, shared=True)
                    results[kind] = (sr, [])
                for r in range(args.rounds):
                    for kind in kinds:
                        sr, runs = results[kind]
                        v = pool.vdi_create(sr, len(data), name_label="bench%d" % r)
                        write, read = device_io(pool, sr, v, data)
                        runs.append((len(data) / MiB / write, len(data) / MiB / read))
                        print("round %d %-4s write %7.1f MiB/s  cold read %7.1f MiB/s"
                              % (r, kind, runs[-1][0], runs[-1][1]), flush=True)
                        pool.vdi_destroy(v)
        finally:
            subprocess.run(["bash", RIG, "down", rig])
    med = dict((k, (statistics.median(w for w, _ in runs),
                    statistics.median(rd for _, rd in runs)))
               for k, (_, runs) in results.items())
    print("%d MiB, %d rounds, medians:" % (args.size_mib, args.rounds))
    for kind in kinds:
        print("  %-4s write %7.1f MiB/s  cold read %7.1f MiB/s" % ((kind,) + med[kind]))
    if len(kinds) == 2:
        print("kernel / fuse: write %.2fx  read %.2fx  (goal >= 1.0)"
              % (med["nbd"][0] / med["fuse"][0], med["nbd"][1] / med["fuse"][1]))


if __name__ == "__main__":
    main()
