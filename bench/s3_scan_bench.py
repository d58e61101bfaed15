"""What the s3 driver's part of one sr_scan costs in S3 requests, on a real S3 server.

    eval "$(tests/rigs/s3.sh env DIR)"; python3 bench/s3_scan_bench.py [--vdis 200]

sr_scan runs collect_garbage(), list() and sr_stats() in one process (framework/scan.py).
They share one gc.Survey: one listing of the SR, one more of its manifests to confirm
it, one GET per manifest. This counts the requests the driver's S3 client answered
(its own counter), and the time, against the three reading everything each on their own
(what the driver did before the survey).
"""
import argparse
import json
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


class Log(object):
    def info(self, msg):
        pass

    error = info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vdis", type=int, default=200)
    args = ap.parse_args()
    if not os.environ.get("SRKIT_S3_ENDPOINT"):
        sys.exit("no S3 server: eval \"$(tests/rigs/s3.sh env DIR)\"")
    from drivers.s3 import gc
    from drivers.s3.driver import S3Driver
    from framework import meta as m
    from framework.driver import Context
    from framework.options import validate
    from framework.new_values import new_uuid
    e = os.environ
    dc = {"endpoint": e["SRKIT_S3_ENDPOINT"], "bucket": e["SRKIT_S3_BUCKET"],
          "access_key": e["SRKIT_S3_ACCESS_KEY"], "secret_key": e["SRKIT_S3_SECRET_KEY"],
          "prefix": "scanbench-%s/" % os.urandom(3).hex(), "chunk_size": str(1024 * 1024)}
    tmp = tempfile.mkdtemp(prefix="s3scan-")

    def driver():
        return S3Driver(sr, validate(S3Driver.options, dc, None), Context(tmp, Log(), True))
    sr = new_uuid()
    d = driver()
    d.sr_create(0)
    for i in range(args.vdis):
        d.create(new_uuid(), 64 * 1024 * 1024, m.new("v%d" % i))

    def counted(fn):
        d = driver()
        before = d.client.requests
        t = time.monotonic()
        fn(d)
        return d.client.requests - before, time.monotonic() - t

    def shared(d):          # what framework/scan.py runs
        d.collect_garbage()
        d.list()
        d.sr_stats()

    def separate(d):        # each reading everything on its own
        gc.collect(d.client, d.bucket, d.root, 0)
        gc.referenced(d.client, d.bucket, d.root)
        gc.usage(d.client, d.bucket, d.root)
    counted(shared)         # warm the server's caches alike for both
    after = counted(shared)
    before = counted(separate)
    keys = [k for k, _, _, _ in gc.list_objects(d.client, d.bucket, d.root)]
    for i in range(0, len(keys), 1000):
        d.client.delete_objects(Bucket=d.bucket, Delete={
            "Objects": [{"Key": k} for k in keys[i:i + 1000]], "Quiet": True})
    print(json.dumps({"vdis": args.vdis, "requests_before": before[0],
                      "requests_after": after[0], "seconds_before": round(before[1], 3),
                      "seconds_after": round(after[1], 3),
                      "request_ratio": round(after[0] / before[0], 3),
                      "time_ratio": round(after[1] / before[1], 3)}, indent=1))


if __name__ == "__main__":
    main()
