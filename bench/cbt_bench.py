"""CBT benchmark: vdi_list_changed_blocks on a big VDI with 1% rewritten, per driver,
against the backend's own diff, and the bitmap's over-report against the real change.

    source the rigs' env (tests/rigs/ceph.sh, tests/rigs/s3.sh)
    python3 bench/cbt_bench.py [--size-gib 64] [--drivers rbd,s3] [-n 3]

For each driver: a VDI of --size-gib, CBT on, snapshot S1, 1% of it rewritten in
64 KiB writes scattered evenly, snapshot S2; then (medians of -n runs)
  - list: vdi_list_changed_blocks(S1, S2) through the driver (spawn -> reply, as xapi
    runs it);
  - native: the backend's own diff: `rbd diff --from-snap S1 image@S2` (the CLI),
    or for s3 a one-shot python + boto3 process reading the two manifests and
    comparing their maps (both baselines are a process, as the driver run is);
  - over-report: bytes the bitmap sets / bytes really rewritten.
Goal (issue 17): list <= 1.5 x native.

rbd writes go through librbd as the admin (the data path is not what is measured);
s3 "writes" replace 1% of the manifest's chunk entries with a new chunk (what a
flush of those writes leaves), as bench/s3_bench.py builds its big manifests.
"""
import argparse
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "s3"))
sys.path.insert(0, os.path.join(REPO, "tests", "ceph"))

from ceph_bench import device_config  # noqa: E402 (bench/ is sys.path[0])
from s3_bench import env_dc, median_time  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
BLOCK = 64 * KiB


SYS_PY = "/usr/bin/python3"    # what the driver runs under, as xapi runs it

# the baseline for s3: a one-shot python + boto3 reading both manifests and comparing
# their chunk maps (a process, like the driver run it is compared with)
ONE_DIFF = r"""
import json, sys, boto3
from botocore.config import Config
e, ak, sk, b, k1, k2 = sys.argv[1:]
c = boto3.session.Session().client("s3", endpoint_url=e, aws_access_key_id=ak,
    aws_secret_access_key=sk, region_name="us-east-1", config=Config(s3={"addressing_style": "path"}))
m1, m2 = [json.loads(c.get_object(Bucket=b, Key=k)["Body"].read())["chunks"] for k in (k1, k2)]
print(len([i for i in set(m1) | set(m2) if m1.get(i) != m2.get(i)]))
"""


def driver_list(pool, s1, s2, n):
    """Median seconds of the driver run (spawn -> reply) and the last reply."""
    from simulator.conformance import cbt_flow
    times, text = [], None
    for _ in range(n):
        text = cbt_flow.changed_blocks(pool, s1, s2)
        call = [c for c in pool.calls if c.command == "vdi_list_changed_blocks"][-1]
        times.append(call.seconds)
    return statistics.median(times), text


def set_bytes(text, size):
    raw = base64.b64decode(text)
    nbits = sum(bin(b).count("1") for b in raw)
    return min(nbits * BLOCK, size)


def offsets(size, fraction):
    """Evenly scattered 64 KiB-aligned offsets covering ``fraction`` of ``size``."""
    count = max(1, int(size * fraction) // BLOCK)
    step = size // count
    return [(i * step) // BLOCK * BLOCK for i in range(count)]


def bench_rbd(args, tmp):
    import rados
    from ceph_rig import SR
    from simulator import Pool
    from simulator.conformance import cbt_flow
    e = os.environ
    dc = device_config()
    cluster = rados.Rados(conffile=e["SRKIT_CEPH_CONF"], conf={"log_to_stderr": "false"})
    cluster.connect(timeout=10)
    size = args.size_gib * GiB
    with Pool(os.path.join(tmp, "rbd-pool"), sm_dir=os.path.join(REPO, "sm_drivers"),
              hosts=1) as pool:
        ref = pool.sr_create("rbd", dc, name_label="cbt-bench", shared=True)
        sr = SR(pool, ref, cluster, dc)
        try:
            v = pool.vdi_create(ref, size, name_label="cbt")
            image = sr.uuid_of(v)
            cbt_flow.enable(pool, v)
            with sr.image(image) as img:
                for off in offsets(size, 0.01):
                    img.write(b"\x01" * BLOCK, off)     # the base has data there
            s1 = cbt_flow.snapshot(pool, v)
            changed = offsets(size, args.fraction)
            t = time.monotonic()
            with sr.image(image) as img:
                for off in changed:
                    img.write(os.urandom(16) * (BLOCK // 16), off)
                img.flush()
            write_s = time.monotonic() - t
            s2 = cbt_flow.snapshot(pool, v)
            list_s, text = driver_list(pool, s1, s2, args.n)
            spec = "%s/%s/%s@%s" % (dc["pool"], sr.namespace, image, sr.uuid_of(s2))
            cmd = ["rbd", "--id", e["SRKIT_CEPH_USER"], "-c", e["SRKIT_CEPH_CONF"],
                   "--keyring", e.get("SRKIT_CEPH_KEYRING", ""), "diff", "--format", "json",
                   "--from-snap", sr.uuid_of(s1), spec]
            native_out = []
            native_s = median_time(
                lambda: native_out.append(subprocess.run(cmd, check=True,
                                                         stdout=subprocess.PIPE).stdout),
                args.n)
            native_bytes = sum(x["length"] for x in json.loads(native_out[-1]))
            really = len(changed) * BLOCK
            out = {"size_GiB": args.size_gib, "rewritten_MiB": really / MiB,
                   "list_s": list_s, "rbd_diff_s": native_s, "ratio": list_s / native_s,
                   "bitmap_MiB": set_bytes(text, size) / MiB,
                   "rbd_diff_MiB": native_bytes / MiB,
                   "over_report": set_bytes(text, size) / really, "write_s": write_s}
            for x in (s2, s1, v):
                pool.vdi_destroy(x)
            return out
        finally:
            for pbd in pool.sr_record(ref)["PBDs"]:
                pool.pbd_unplug(pbd)
            try:
                pool.sr_destroy(ref)
            except Exception as exc:
                print("rbd cleanup: %s" % exc, file=sys.stderr)
            cluster.shutdown()


def bench_s3(args, tmp):
    from drivers.s3 import chunks, layout, manifest
    from s3_rig import SR, make_admin
    from simulator import Pool
    from simulator.conformance import cbt_flow
    chunk = args.s3_chunk_mib * MiB
    dc = env_dc(tmp, "cbtbench-%s/" % os.urandom(3).hex(), chunk)
    admin = make_admin(dc["endpoint"], dc["access_key"], dc["secret_key"])
    size = args.size_gib * GiB
    with Pool(os.path.join(tmp, "s3-pool"), sm_dir=os.path.join(REPO, "sm_drivers"),
              hosts=1) as pool:
        sr = SR(pool, pool.sr_create("s3", dc, name_label="cbt-bench", shared=True), admin, dc)
        try:
            client = sr.client()
            v = pool.vdi_create(sr.ref, size, name_label="cbt")
            uuid = sr.location(v)
            key = layout.manifest(sr.root, uuid)

            def put_chunks(change):
                doc, etag = manifest.load(client, sr.bucket, key)
                change(doc)
                manifest.store(client, sr.bucket, key, doc, etag)

            def one_chunk(seed):
                data = (seed * 64)[:64] * (chunk // 64)
                digest = chunks.digest(data)
                chunks.upload(client, sr.bucket, layout.chunk(sr.root, digest), data, "3")
                return digest
            full = one_chunk(b"base")
            put_chunks(lambda doc: doc["chunks"].update(
                (str(i), full) for i in range(size // chunk)))
            cbt_flow.enable(pool, v)
            s1 = cbt_flow.snapshot(pool, v)
            changed = offsets(size, args.fraction)
            new = one_chunk(b"new")
            put_chunks(lambda doc: doc["chunks"].update(
                (str(off // chunk), new) for off in changed))
            s2 = cbt_flow.snapshot(pool, v)
            list_s, text = driver_list(pool, s1, s2, args.n)

            keys = [layout.manifest(sr.root, sr.location(x)) for x in (s1, s2)]
            cmd = [SYS_PY, "-c", ONE_DIFF, dc["endpoint"], dc["access_key"],
                   dc["secret_key"], dc["bucket"]] + keys
            native_s = median_time(lambda: subprocess.run(cmd, check=True,
                                                          stdout=subprocess.DEVNULL), args.n)
            really = len(changed) * BLOCK
            out = {"size_GiB": args.size_gib, "chunk_MiB": args.s3_chunk_mib,
                   "rewritten_MiB": really / MiB, "list_s": list_s,
                   "manifest_read_s": native_s, "ratio": list_s / native_s,
                   "bitmap_MiB": set_bytes(text, size) / MiB,
                   "over_report": set_bytes(text, size) / really,
                   "changed_chunks_MiB": len(set(off // chunk for off in changed)) * chunk / MiB}
            for x in (s2, s1, v):
                pool.vdi_destroy(x)
            return out
        finally:
            try:
                sr.purge()
            except Exception as exc:
                print("s3 cleanup: %s" % exc, file=sys.stderr)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gib", type=int, default=64)
    ap.add_argument("--fraction", type=float, default=0.01)
    ap.add_argument("--drivers", default="rbd,s3")
    ap.add_argument("--s3-chunk-mib", type=int, default=4)
    ap.add_argument("-n", type=int, default=3)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="cbtbench-")
    for name in args.drivers.split(","):
        result = {"rbd": bench_rbd, "s3": bench_s3}[name](args, tmp)
        print(name, json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
