"""VDI export/import against the tools users compare it with (issues 6 and 20).

Everything is end to end: each srkit figure is one ``srkit xe vdi-export`` /
``vdi-import`` process (CLI start, attach, transfer, detach), the way a user
runs it; the CLI tools read the same bytes from a sparse file in the same
directory. Compared series run interleaved, best of ROUNDS each (the machine is
shared); the pipeline's own times (without process start, attach, detach) come
from SMlog. Data is "disk-like": per 4 MiB, 1 MiB random and 3 MiB of 16-symbol
text, in 64 MiB pieces spread over the disk.

  export   raw+zstd:3 of a D-GiB VDI holding M MiB vs ``zstd -T0 -3`` of the same
           bytes                                                   goal >= 0.95x
  import   that stream into a new VDI vs ``zstd -d -T0`` to /dev/null   >= 0.7x
           and vs ``zstd -d -T0 | dd`` onto a loop device of the same size   >= 0.9x
  sparse   raw (and qcow2) export of the sparse VDI vs a dense one with the same
           data                                                    goal <= 1.3x
  fixed    one export / import of an empty F-MiB VDI (spawn, attach, detach, exit)
                                                                   goal <= 0.5 s
           with the parts it is made of: ``srkit xe vdi-list`` (the simulator's CLI
           alone), both interpreters' ``-c pass``, and (plugin) the host command
           run directly
  plugin   the xapi plugin's vdi_export (detached job, polled to 'done') vs the host
           CLI ``python3 -m framework.export vdi-export`` for the same VDI
                                                                   goal <= 1.0x
  delta    rbd / s3 (when their rig's environment is set): delta with 1% rewritten vs
           full (qcow2): time <= 5%, bytes read from the backend <= 1.2x the change

    python3 bench/export.py [--disk-gib 4] [--data-mib 1024] [--fixed-mib 256]
                            [--delta-mib 256] [--only export,import,...] [--json FILE]

Run as root (loop devices); needs zstd and dd.
"""
import argparse
import importlib.machinery
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MiB = 1024 * 1024
ROUNDS = 3
PIECE = 64 * MiB
PARTS = ("export", "import", "sparse", "fixed", "plugin", "delta")
_TEXT = bytes.maketrans(bytes(range(256)), bytes(b"abcdefghijklmnop"[i % 16] for i in range(256)))


def disk_like(n):
    r = os.urandom(n)
    quarter = n // 4
    return r[:quarter] + r[quarter:].translate(_TEXT)


def xe(pool, *args):
    env = dict(os.environ, SRKIT_POOL=pool.path)
    # an installed srkit runs from cached bytecode: do not time compiling it (a CI or
    # sandbox environment may set this; drivers and the host command never get it)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "xe"] + list(args),
                          cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.returncode:
        raise SystemExit("srkit xe %s: %s" % (" ".join(args), proc.stderr.decode()))
    return time.monotonic() - start, proc.stdout.decode().strip()


def shell(command):
    start = time.monotonic()
    subprocess.run(["sh", "-c", command], check=True)
    return time.monotonic() - start


def best(series, rounds=ROUNDS):
    """{name: best seconds}: each round runs every series once, in turn."""
    out = dict((name, float("inf")) for name in series)
    for _ in range(rounds):
        for name, run in series.items():
            out[name] = min(out[name], run())
    return out


def write_vdi(pool, uuid, extents, mirror=None, source=None):
    """Fill ``extents`` [(offset, length)] of a VDI with disk-like data (or the bytes
    of ``source`` at the same offsets); the same bytes go to the file ``mirror``."""
    ref = pool.by_uuid("VDI", uuid)
    path = pool.vdi_attach(ref, writable=True)["params"]
    copy = os.open(mirror, os.O_WRONLY | os.O_CREAT) if mirror else None
    src = os.open(source, os.O_RDONLY) if source else None
    fd = os.open(path, os.O_WRONLY)
    try:
        for (offset, length), at in zip(extents, _cumulative(extents)):
            pos = 0
            while pos < length:
                n = min(4 * MiB, length - pos)
                data = os.pread(src, n, at + pos) if src is not None else disk_like(n)
                os.pwrite(fd, data, offset + pos)
                if copy is not None:
                    os.pwrite(copy, data, offset + pos)
                pos += n
        os.fsync(fd)
    finally:
        os.close(fd)
        for f in (copy, src):
            if f is not None:
                os.close(f)
        pool.vdi_detach(ref)


def _cumulative(extents):
    at = 0
    for _, length in extents:
        yield at
        at += length


def create(pool, sr, size):
    return xe(pool, "vdi-create", "sr-uuid=" + sr, "name-label=bench",
              "virtual-size=%d" % size)[1]


def destroy(pool, uuid):
    pool.vdi_destroy(pool.by_uuid("VDI", uuid))


def spread(disk, data, seed=20):
    """``data`` bytes in PIECE-sized pieces at random PIECE-aligned places of ``disk``."""
    slots = sorted(random.Random(seed).sample(range(disk // PIECE), data // PIECE))
    return [(s * PIECE, PIECE) for s in slots]


class Local:
    def __init__(self, pool, work, disk, data):
        self.pool, self.work, self.disk, self.data = pool, work, disk, data
        sr_dir = os.path.join(work, "sr")
        os.mkdir(sr_dir)
        self.sr = pool.record("SR", pool.sr_create("local", {"location": sr_dir}))["uuid"]
        self.extents = spread(disk, data)
        self.raw = os.path.join(work, "sparse.raw")      # the same bytes, for the CLI tools
        with open(self.raw, "wb") as f:
            f.truncate(disk)
        self.sparse = create(pool, self.sr, disk)
        write_vdi(pool, self.sparse, self.extents, mirror=self.raw)
        self.stream = os.path.join(work, "sparse.raw.zst")

    def export(self, results):
        out, cli = self.stream, os.path.join(self.work, "cli.zst")
        pool, vdi = self.pool, self.sparse
        t = best({
            "srkit": lambda: xe(pool, "vdi-export", "uuid=" + vdi, "filename=" + out,
                                "format=raw", "compression=zstd:3")[0],
            "zstd": lambda: shell("zstd -T0 -3 -q -f -c %s > %s" % (self.raw, cli)),
        })
        results["export_vs_zstd"] = dict(
            disk_mib=self.disk // MiB, data_mib=self.data // MiB, srkit_s=t["srkit"],
            zstd_s=t["zstd"], ratio=t["zstd"] / t["srkit"], srkit_bytes=os.path.getsize(out),
            zstd_bytes=os.path.getsize(cli), goal=">= 0.95")
        os.unlink(cli)

    def import_(self, results):
        pool, out = self.pool, self.stream
        if not os.path.exists(out):
            xe(pool, "vdi-export", "uuid=" + self.sparse, "filename=" + out, "format=raw")
        target = os.path.join(self.work, "loop.raw")
        existing = create(pool, self.sr, self.disk)

        def new_vdi():
            seconds, uuid = xe(pool, "vdi-import", "sr-uuid=" + self.sr, "filename=" + out)
            destroy(pool, uuid)
            return seconds

        def to_loop():
            with open(target, "wb") as f:
                f.truncate(self.disk)
            loop = subprocess.check_output(["losetup", "--find", "--show", target]).decode().strip()
            try:
                return shell("zstd -d -T0 -q -c %s | dd of=%s bs=4M iflag=fullblock "
                             "conv=fsync status=none" % (out, loop))
            finally:
                subprocess.run(["losetup", "-d", loop], check=True)
                os.unlink(target)
        t = best({
            "new_vdi": new_vdi,
            "zstd_d": lambda: shell("zstd -d -T0 -q -c %s > /dev/null" % out),
            "zstd_d_dd": to_loop,
            "existing_vdi": lambda: xe(pool, "vdi-import", "uuid=" + existing,
                                       "filename=" + out)[0],
        })
        destroy(pool, existing)
        results["import_vs_zstd_d"] = dict(
            new_vdi_s=t["new_vdi"], existing_vdi_s=t["existing_vdi"], zstd_d_s=t["zstd_d"],
            zstd_d_dd_s=t["zstd_d_dd"], ratio=t["zstd_d"] / t["new_vdi"],
            ratio_dd=t["zstd_d_dd"] / t["new_vdi"],
            ratio_existing=t["zstd_d"] / t["existing_vdi"], goal=">= 0.7 (zstd -d), >= 0.9 (dd)")

    def sparse_vs_dense(self, results):
        pool, out = self.pool, os.path.join(self.work, "s.zst")
        dense = create(pool, self.sr, self.data)
        write_vdi(pool, dense, [(0, self.data)], source=self.raw_data())
        t = {}
        for fmt in ("raw", "qcow2"):
            t.update(("%s_%s" % (fmt, k), v) for k, v in best({
                "dense": lambda: xe(pool, "vdi-export", "uuid=" + dense, "filename=" + out,
                                    "format=" + fmt)[0],
                "sparse": lambda: xe(pool, "vdi-export", "uuid=" + self.sparse,
                                     "filename=" + out, "format=" + fmt)[0],
            }).items())
        destroy(pool, dense)
        os.unlink(out)
        results["sparse_vs_dense"] = dict(
            disk_mib=self.disk // MiB, data_mib=self.data // MiB,
            raw_ratio=t["raw_sparse"] / t["raw_dense"],
            qcow2_ratio=t["qcow2_sparse"] / t["qcow2_dense"], goal="<= 1.3", **t)

    def raw_data(self):
        """The data of the sparse VDI, back to back (a dense disk's content)."""
        path = os.path.join(self.work, "data.raw")
        if not os.path.exists(path):
            with open(self.raw, "rb") as src, open(path, "wb") as dst:
                for offset, length in self.extents:
                    src.seek(offset)
                    dst.write(src.read(length))
        return path


def fixed_cost(pool, work, size, results):
    """Export and import of an empty VDI: only the fixed costs remain."""
    sr_dir = os.path.join(work, "sr-fixed")
    os.mkdir(sr_dir)
    sr = pool.record("SR", pool.sr_create("local", {"location": sr_dir}))["uuid"]
    vdi = create(pool, sr, size)
    out = os.path.join(work, "empty.raw.zst")

    def new_vdi():
        seconds, uuid = xe(pool, "vdi-import", "sr-uuid=" + sr, "filename=" + out)
        destroy(pool, uuid)
        return seconds
    xe(pool, "vdi-export", "uuid=" + vdi, "filename=" + out)
    t = best({
        "export": lambda: xe(pool, "vdi-export", "uuid=" + vdi, "filename=" + out)[0],
        "import_new": new_vdi,
        "import_existing": lambda: xe(pool, "vdi-import", "uuid=" + vdi,
                                      "filename=" + out)[0],
        "xe_noop": lambda: xe(pool, "vdi-list", "uuid=" + vdi)[0],
        # the floor under each process: the interpreters' own start
        "python3_pass": lambda: shell("/usr/bin/python3 -c pass"),
        "sim_python_pass": lambda: shell("%s -c pass" % sys.executable),
    }, rounds=5)
    results["fixed_cost"] = dict(virtual_mib=size // MiB, goal="<= 0.5 s", **t)
    return sr, vdi


def plugin_vs_cli(pool, work, sr, vdi, results):
    """The xapi plugin's vdi_export (a detached job the caller polls) vs the host CLI."""
    loader = importlib.machinery.SourceFileLoader("srkit_plugin",
                                                  os.path.join(REPO, "plugins", "srkit"))
    spec = importlib.util.spec_from_loader("srkit_plugin", loader)
    plugin = importlib.util.module_from_spec(spec)
    host = pool.master
    dirs = pool.host_dirs(host)
    out = os.path.join(work, "plugin.raw.zst")
    with pool.server.running() as socket_path:
        env = dict(SRKIT_XAPI_SOCKET=socket_path, SRKIT_LOCK_DIR=dirs["lock"],
                   SRKIT_STATE_DIR=dirs["state"], PYTHONPATH=REPO,
                   SRKIT_LOG_FILE=os.path.join(pool.path, "SMlog"),
                   SRKIT_JOB_DIR=os.path.join(work, "jobs"))
        saved = dict(os.environ)
        os.environ.update(env)
        try:
            loader.exec_module(plugin)
            # xapi runs plugins with /usr/bin/python3, whose jobs then run under it too; here
            # the plugin is loaded into the bench's venv interpreter, whose start is slower
            plugin.PYTHON = "/usr/bin/python3"

            def via_plugin():
                start = time.monotonic()
                job = plugin.vdi_export(None, {"uuid": vdi, "filename": out})
                while True:
                    state = json.loads(plugin.progress(None, {"job": job}))["state"]
                    if state in ("done", "failed"):
                        break
                    time.sleep(0.01)
                if state != "done":
                    raise SystemExit("plugin export failed: %s" % plugin.progress(
                        None, {"job": job}))
                return time.monotonic() - start

            def via_cli():
                start = time.monotonic()
                subprocess.run(["/usr/bin/python3", "-m", "framework.export", "vdi-export",
                                "uuid=" + vdi, "filename=" + out], check=True, cwd="/")
                return time.monotonic() - start
            t = best({"cli": via_cli, "plugin": via_plugin}, rounds=5)
        finally:
            os.environ.clear()
            os.environ.update(saved)
    results["plugin_vs_cli"] = dict(ratio=t["plugin"] / t["cli"], goal="<= 1.0", **t)


def _last_export_bytes(pool):
    """The data bytes the last export read through the device (its SMlog line)."""
    with open(os.path.join(pool.path, "SMlog")) as f:
        lines = [line for line in f if "bytes of data" in line]
    return int(lines[-1].split("):", 1)[1].split()[0])


def backend_delta(pool, work, kind, dc, size, results, read_bytes=None):
    """Full vs delta (1% rewritten in 1 MiB pieces) qcow2 export; ``read_bytes()``: the
    backend's own count of bytes read so far (else the bytes read through the device)."""
    sr_ref = pool.sr_create(kind, dc, name_label="bench", shared=True)
    sr = pool.record("SR", sr_ref)["uuid"]
    vdi = create(pool, sr, size)
    made = [vdi]
    out = os.path.join(work, "%s.qcow2.zst" % kind)
    try:
        write_vdi(pool, vdi, [(0, size)])
        s0 = xe(pool, "vdi-snapshot", "uuid=" + vdi)[1]
        made.insert(0, s0)
        changed = max(1, size // MiB // 100)
        step = size // changed
        write_vdi(pool, vdi, [(i * step, MiB) for i in range(changed)])
        s1 = xe(pool, "vdi-snapshot", "uuid=" + vdi)[1]
        made.insert(0, s1)
        reads, device = {}, {}

        def counted(name, *args):
            before = read_bytes() if read_bytes else 0
            seconds = xe(pool, "vdi-export", "uuid=" + s1, "filename=" + out,
                         "format=qcow2", *args)[0]
            device[name] = _last_export_bytes(pool)
            reads[name] = read_bytes() - before if read_bytes else device[name]
            return seconds
        t = best({"full": lambda: counted("full"),
                  "delta": lambda: counted("delta", "base=" + s0)})
        results["%s_delta_vs_full" % kind] = dict(
            disk_mib=size // MiB, changed_mib=changed, full_s=t["full"], delta_s=t["delta"],
            ratio=t["delta"] / t["full"], delta_read_bytes=reads["delta"],
            full_read_bytes=reads["full"], delta_device_bytes=device["delta"],
            read_vs_changed=reads["delta"] / float(changed * MiB),
            read_counted_by="backend" if read_bytes else "device",
            goal="time <= 0.05, read <= 1.2x changed")
    finally:
        for uuid in made:
            try:
                destroy(pool, uuid)
            except Exception as ex:
                print("cleanup: %s" % ex, file=sys.stderr)
        from simulator.testkit import detach_all
        detach_all(pool, unplug=True)
        pool.sr_destroy(sr_ref)
        if os.path.exists(out):
            os.unlink(out)


def rbd_delta(pool, work, size, results):
    e = os.environ
    dc = {"monitors": e["SRKIT_CEPH_MONITORS"], "user": e["SRKIT_CEPH_USER"],
          "key": e["SRKIT_CEPH_KEY"], "pool": e.get("SRKIT_CEPH_POOL", "rbd"),
          "datapath": "fuse"}

    def read_bytes():   # what the OSDs served from this pool (rados df)
        out = subprocess.check_output(["rados", "--conf", e["SRKIT_CEPH_CONF"], "df",
                                       "--format", "json"])
        for p in json.loads(out)["pools"]:
            if p["name"] == dc["pool"]:
                return p["read_bytes"]
        return 0
    backend_delta(pool, work, "rbd", dc, size, results, read_bytes)


def s3_delta(pool, work, size, results, chunk_mib):
    e = os.environ
    dc = {"endpoint": e["SRKIT_S3_ENDPOINT"], "bucket": e.get("SRKIT_S3_BUCKET", "srkit"),
          "access_key": e.get("SRKIT_S3_ACCESS_KEY", ""),
          "secret_key": e.get("SRKIT_S3_SECRET_KEY", ""), "chunk_size": str(chunk_mib * MiB),
          "prefix": "bench-%s/" % os.urandom(4).hex(), "cache_dir": os.path.join(work, "cache")}
    # S3 reads whole chunks (their content is what is addressed): the device bytes are
    # the chunks fetched
    backend_delta(pool, work, "s3", dc, size, results)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--disk-gib", type=int, default=4)
    p.add_argument("--data-mib", type=int, default=1024)
    p.add_argument("--fixed-mib", type=int, default=256)
    p.add_argument("--delta-mib", type=int, default=256)
    p.add_argument("--s3-chunk-mib", type=int, default=4, help="chunk size of the s3 SR")
    p.add_argument("--only", default=",".join(PARTS), help="comma-separated: " + ", ".join(PARTS))
    p.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    parts = set(args.only.split(","))
    if not shutil.which("zstd"):
        raise SystemExit("bench/export.py needs zstd")
    from simulator import Pool
    work = tempfile.mkdtemp(prefix="srkit-bench-export.", dir=args.dir)
    results = {}
    try:
        with Pool(os.path.join(work, "pool"), sm_dir=os.path.join(REPO, "sm_drivers")) as pool:
            if parts & {"export", "import", "sparse"}:
                local = Local(pool, work, args.disk_gib * 1024 * MiB, args.data_mib * MiB)
                if "export" in parts:
                    local.export(results)
                if "import" in parts:
                    local.import_(results)
                if "sparse" in parts:
                    local.sparse_vs_dense(results)
            if parts & {"fixed", "plugin"}:
                sr, vdi = fixed_cost(pool, work, args.fixed_mib * MiB, results)
                if "plugin" in parts:
                    plugin_vs_cli(pool, work, sr, vdi, results)
            if "delta" in parts and os.environ.get("SRKIT_CEPH_CONF"):
                rbd_delta(pool, work, args.delta_mib * MiB, results)
            if "delta" in parts and os.environ.get("SRKIT_S3_ENDPOINT"):
                s3_delta(pool, work, args.delta_mib * MiB, results, args.s3_chunk_mib)
            for _, dp in list(pool.db.all("datapath")):
                pool.vdi_detach(dp["VDI"], host=dp["host"])
            with open(os.path.join(pool.path, "SMlog")) as f:
                results["pipeline_log"] = [line.split("]", 1)[-1].strip() for line in f
                                           if "export " in line and "bytes of data" in line
                                           or "import into" in line]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=2, sort_keys=True))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, sort_keys=True)


if __name__ == "__main__":
    main()
