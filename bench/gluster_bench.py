"""Gluster driver benchmark on the real glusterd of tests/rigs/gluster.sh.

    eval "$(tests/rigs/gluster.sh env DIR)"; python3 bench/gluster_bench.py [--quick]

Measures, in one run, through a simulated pool running sm_drivers/GlusterSR:
  1. vdi_snapshot of a VDI holding DATA (1 GiB; --quick: 256 MiB) vs an empty one,
     on the XFS-reflink brick volume and on the replica-2 volume; goal where the
     copy is server-side: ratio <= 2. Also reports how the driver copied
     (copy-range / sparse-copy) and whether the copy shares extents with its source
     on the XFS brick (a reflink) as `xfs_io fiemap` reports it.
  2. sequential write then read of DATA through the attached device (a loop device
     on the FUSE file) vs `dd` on the FUSE mount itself, same run; goal >= 0.8x.
  3. xe vdi-copy of a 4 GiB VDI holding 512 MiB (--quick: 1 GiB / 128 MiB) to a
     `local` SR vs copying those bytes alone (`dd` of a file of that size on the mount
     to the same local directory).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

MiB = 1024 * 1024
GiB = 1024 * MiB


def env(key):
    value = os.environ.get(key)
    if not value:
        sys.exit("%s is not set: eval \"$(tests/rigs/gluster.sh env DIR)\"" % key)
    return value


def drop_caches():
    subprocess.run(["sync"])
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def dd(args):
    t = time.monotonic()
    subprocess.run(["dd", "status=none"] + args, check=True)
    return time.monotonic() - t


def fill(path, offset, length):
    """Write ``length`` bytes of incompressible data at ``offset`` (1 MiB blocks)."""
    dd(["if=/dev/urandom", "of=" + path, "bs=1M", "count=%d" % (length // MiB),
        "seek=%d" % (offset // MiB), "conv=notrunc,fsync"])


def shared_extents(path):
    """Bytes of ``path`` in extents the filesystem marks shared (FIEMAP flag 0x2000)."""
    out = subprocess.run(["xfs_io", "-r", "-c", "fiemap -v", path], capture_output=True,
                         text=True).stdout
    shared = 0
    for line in out.splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 5 and parts[2] != "hole":
            try:
                if int(parts[4], 16) & 0x2000:
                    shared += int(parts[3]) * 512
            except ValueError:
                pass
    return shared


def snapshot_bench(pool, volume, brick, data, report):
    from simulator.vdi_copy import vdi_copy  # noqa: F401  (same import cost as part 3)
    host = env("SRKIT_GLUSTER_HOST")
    ref = pool.sr_create("gluster", {"server": "%s:/%s" % (host, volume),
                                     "server_copy": "reflink"},
                         name_label=volume, shared=True)
    sr_uuid = pool.sr_record(ref)["uuid"]
    mount = os.path.join(pool.host_dirs(pool.master)["state"], sr_uuid, "volume", sr_uuid)
    empty = pool.vdi_create(ref, data, name_label="empty")
    full = pool.vdi_create(ref, data, name_label="full")
    fill(os.path.join(mount, pool.vdi_record(full)["uuid"] + ".raw"), 0, data)
    times = {}
    for label, vdi in (("empty", empty), ("full", full)):
        t = time.monotonic()
        snap = pool.vdi_snapshot(vdi)
        times[label] = time.monotonic() - t
        if label == "full":
            snap_file = os.path.join(brick, sr_uuid, pool.vdi_record(snap)["uuid"] + ".raw")
            shared = shared_extents(snap_file)
    how = [line for line in open(os.path.join(pool.path, "SMlog"))
           if "snapshot of %s" % pool.vdi_record(full)["uuid"] in line]
    how = how[-1].rsplit(" by ", 1)[-1].strip() if how else "?"
    report.append("snapshot %s: empty %.2f s, %d MiB of data %.2f s, ratio %.1f (goal <= 2 "
                  "where the copy is server-side); copied by %s; reflinked on the brick: "
                  "%d MiB" % (volume, times["empty"], data // MiB, times["full"],
                              times["full"] / max(times["empty"], 1e-3), how, shared // MiB))
    return ref


def datapath_bench(pool, sr, data, report, rounds=3):
    """Device and FUSE file interleaved round by round (the machine is shared: noise
    hits both alike); medians."""
    import statistics
    sr_uuid = pool.sr_record(sr)["uuid"]
    mount = os.path.join(pool.host_dirs(pool.master)["state"], sr_uuid, "volume", sr_uuid)
    vdi = pool.vdi_create(sr, data, name_label="seq")
    dev = pool.vdi_attach(vdi)["params"]
    plain = os.path.join(mount, ".bench-dd")
    count = "count=%d" % (data // (4 * MiB))
    t = {"w_dev": [], "r_dev": [], "w_fuse": [], "r_fuse": []}
    try:
        for _ in range(rounds):
            for kind, target in (("dev", dev), ("fuse", plain)):
                t["w_" + kind].append(dd(["if=/dev/zero", "of=" + target, "bs=4M", count,
                                          "oflag=direct", "conv=fsync,notrunc"]))
                drop_caches()
                t["r_" + kind].append(dd(["if=" + target, "of=/dev/null", "bs=4M",
                                          "iflag=direct"]))
    finally:
        pool.vdi_detach(vdi)
        if os.path.exists(plain):
            os.unlink(plain)
    w_dev, r_dev, w_fuse, r_fuse = (statistics.median(t[k])
                                    for k in ("w_dev", "r_dev", "w_fuse", "r_fuse"))
    mb = data / MiB
    report.append("sequential write %d MiB: device %.0f MiB/s vs dd on the FUSE mount %.0f "
                  "MiB/s (%.2fx, goal >= 0.8)" % (mb, mb / w_dev, mb / w_fuse, w_fuse / w_dev))
    report.append("sequential read  %d MiB: device %.0f MiB/s vs dd on the FUSE mount %.0f "
                  "MiB/s (%.2fx, goal >= 0.8)" % (mb, mb / r_dev, mb / r_fuse, r_fuse / r_dev))
    pool.vdi_destroy(vdi)


def copy_bench(pool, sr, size, data, workdir, report):
    from simulator.vdi_copy import vdi_copy
    sr_uuid = pool.sr_record(sr)["uuid"]
    mount = os.path.join(pool.host_dirs(pool.master)["state"], sr_uuid, "volume", sr_uuid)
    target_dir = os.path.join(workdir, "local")
    os.makedirs(target_dir)
    target = pool.sr_create("local", {"location": target_dir}, name_label="target")
    vdi = pool.vdi_create(sr, size, name_label="to move")
    path = os.path.join(mount, pool.vdi_record(vdi)["uuid"] + ".raw")
    step = size // 8
    for i in range(8):   # data spread over the disk, 1/8 of it in each eighth
        fill(path, i * step, data // 8)
    drop_caches()
    stats = {}
    t = time.monotonic()
    new = vdi_copy(pool, vdi, target, stats)
    t_copy = time.monotonic() - t
    alone = os.path.join(mount, ".bench-alone")
    fill(alone, 0, data)
    drop_caches()
    t_alone = dd(["if=" + alone, "of=" + os.path.join(target_dir, "alone"), "bs=4M",
                  "conv=fsync"])
    os.unlink(alone)
    os.unlink(os.path.join(target_dir, "alone"))
    report.append("vdi-copy of a %d MiB VDI holding %d MiB to a local SR: %.2f s (read %d "
                  "extents, wrote %d MiB) vs %.2f s for the %d MiB alone (ratio %.2f)"
                  % (size // MiB, data // MiB, t_copy, len(stats["extents"] or []),
                     stats["written"] // MiB, t_alone, data // MiB, t_copy / t_alone))
    pool.vdi_destroy(new)
    pool.vdi_destroy(vdi)
    return target


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    data = 256 * MiB if args.quick else GiB
    copy_size, copy_data = (GiB, 128 * MiB) if args.quick else (4 * GiB, 512 * MiB)
    from simulator import Pool
    report = []
    workdir = tempfile.mkdtemp(prefix="srkit-gluster-bench-")
    srs = []
    with Pool(os.path.join(workdir, "pool"), sm_dir=os.path.join(REPO, "sm_drivers"),
              hosts=1) as pool:
        try:
            srs.append(snapshot_bench(pool, env("SRKIT_GLUSTER_XFS_VOLUME"),
                                      env("SRKIT_GLUSTER_XFS_BRICK"), data, report))
            srs.append(snapshot_bench(pool, env("SRKIT_GLUSTER_VOLUME"),
                                      env("SRKIT_GLUSTER_BRICKS").split(":")[0], data, report))
            datapath_bench(pool, srs[-1], data, report)
            srs.append(copy_bench(pool, srs[1], copy_size, copy_data, workdir, report))
        finally:
            for sr in srs:
                for vdi in list(pool.db.get("SR", sr)["VDIs"]):
                    try:
                        pool.vdi_destroy(vdi)
                    except Exception as e:
                        print("cleanup: %s" % e)
                for pbd in pool.db.get("SR", sr)["PBDs"]:
                    pool.pbd_unplug(pbd)
                pool.sr_destroy(sr)
    subprocess.run(["rm", "-rf", workdir])
    print("\n".join(report))


if __name__ == "__main__":
    main()
