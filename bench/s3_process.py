"""What one s3 driver process costs, in CPU seconds: sr_scan and vdi_create through the
simulator, against a bare `/usr/bin/python3 -c pass`. CPU (the children's user +
system time) rather than wall time, so that a busy machine still gives the figure.

    eval "$(tests/rigs/s3.sh env DIR)"; python3 bench/s3_process.py [-n 10]

Run it on two commits to compare them (e.g. boto3 vs drivers/s3/s3client.py).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "s3"))
MiB = 1024 * 1024


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def cpu_of(fn, n):
    samples = []
    for _ in range(n):
        before = children_cpu()
        fn()
        samples.append(children_cpu() - before)
    return statistics.median(samples)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10)
    args = ap.parse_args()
    e = os.environ
    if not e.get("SRKIT_S3_ENDPOINT"):
        sys.exit("no S3 server: eval \"$(tests/rigs/s3.sh env DIR)\"")
    from simulator import Pool
    tmp = tempfile.mkdtemp(prefix="s3proc-")
    dc = {"endpoint": e["SRKIT_S3_ENDPOINT"], "bucket": e["SRKIT_S3_BUCKET"],
          "access_key": e["SRKIT_S3_ACCESS_KEY"], "secret_key": e["SRKIT_S3_SECRET_KEY"],
          "prefix": "proc-%s/" % os.urandom(3).hex(), "cache_dir": os.path.join(tmp, "cache")}
    with Pool(os.path.join(tmp, "pool"), sm_dir=os.path.join(REPO, "sm_drivers"), hosts=1) as pool:
        sr = pool.sr_create("s3", dc, name_label="proc", shared=True)
        made = []
        try:
            bare = cpu_of(lambda: subprocess.run(["/usr/bin/python3", "-c", "pass"], check=True),
                          args.n)
            scan = cpu_of(lambda: pool.sr_scan(sr), args.n)
            create = cpu_of(lambda: made.append(pool.vdi_create(sr, 64 * MiB)), args.n)
        finally:
            for v in made:
                pool.vdi_destroy(v)
            for pbd in pool.db.get("SR", sr)["PBDs"]:
                pool.pbd_unplug(pbd)
            pool.sr_destroy(sr)
    out = {"bare_cpu_s": bare, "sr_scan_cpu_s": scan, "vdi_create_cpu_s": create,
           "sr_scan_vs_bare": scan / bare, "vdi_create_vs_bare": create / bare, "n": args.n}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
