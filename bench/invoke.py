"""Per-invocation latency of sm_drivers/LocalSR, as xapi pays it.

Each sample is one driver process: spawn -> reply fully read -> exit, measured
the way the simulator (and forkexecd) run it. Measured, interleaved round by
round so that machine noise hits every series alike:

  bare                 /usr/bin/python3 -c pass  (the floor: interpreter start)
  sr_get_driver_info   LocalSR with xapi's exact document, no session
  vdi_create           through the simulator (only the driver process is timed)
  vdi_snapshot         through the simulator (only the driver process is timed)

Each is reported as median / p90 and as a ratio to bare. Target:
sr_get_driver_info median <= 2.5x bare.

    python3 bench/invoke.py [-n 40] [--importtime]

``--importtime`` also runs sr_get_driver_info under ``python3 -X importtime``
and lists what each framework/driver module costs to import.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from simulator import sm_exec  # noqa: E402

PYTHON = "/usr/bin/python3"
LOCALSR = os.path.join(REPO, "sm_drivers", "LocalSR")
TARGET = 2.5
MiB = 1024 * 1024


def timed_run(argv, env):
    start = time.monotonic()
    proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                          close_fds=True)
    elapsed = time.monotonic() - start
    if proc.returncode != 0:
        raise RuntimeError("%s exited %d: %r" % (argv[0], proc.returncode, proc.stderr))
    return elapsed, proc.stdout.decode()


def quantile(samples, q):
    s = sorted(samples)
    if not s:
        return float("nan")
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


class Bench:
    def __init__(self, workdir):
        from simulator.pool import Pool
        self.workdir = workdir
        sm_dir = os.path.join(workdir, "sm")
        os.makedirs(sm_dir)
        os.symlink(LOCALSR, os.path.join(sm_dir, "LocalSR"))
        data = os.path.join(workdir, "data")
        os.makedirs(data)
        self.pool = Pool(os.path.join(workdir, "pool"), sm_dir=sm_dir, pythonpath="auto")
        self.sr = self.pool.sr_create("local", {"location": data}, name_label="bench")
        self.info_doc = sm_exec.encode_call("sr_get_driver_info", sm_exec.build_request(
            "sr_get_driver_info", host_ref=self.pool.master, device_config={}))
        self.env = self.pool.driver_env(self.pool.master, None)   # xapi's env + test hooks
        self.base = self.pool.vdi_create(self.sr, 4 * MiB, name_label="snapshot source")
        self.made = []

    def bare(self):
        return timed_run([PYTHON, "-c", "pass"], self.env)[0]

    def driver_info(self):
        elapsed, out = timed_run([LOCALSR, self.info_doc], self.env)
        if "<name>capabilities</name>" not in out:
            raise RuntimeError("bad driver-info reply: %r" % out)
        return elapsed

    def _driver_seconds(self, command):
        calls = [c for c in self.pool.calls[-3:] if c.command == command]
        return calls[-1].seconds

    def vdi_create(self):
        self.made.append(self.pool.vdi_create(self.sr, 4 * MiB, name_label="bench"))
        return self._driver_seconds("vdi_create")

    def vdi_snapshot(self):
        self.made.append(self.pool.vdi_snapshot(self.base))
        return self._driver_seconds("vdi_snapshot")

    def tidy(self):
        for vdi in self.made:
            self.pool.vdi_destroy(vdi)
        self.made = []

    def close(self):
        self.tidy()
        self.pool.vdi_destroy(self.base)
        self.pool.close()


def importtime(doc, env):
    """{module: cumulative microseconds} for framework/drivers imports of one call."""
    proc = subprocess.run([PYTHON, "-X", "importtime", LOCALSR, doc],
                          stdin=subprocess.DEVNULL, capture_output=True, env=env)
    rows = []
    for line in proc.stderr.decode().splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = [p.strip() for p in line[len("import time:"):].split("|")]
        try:
            self_us, cumulative = int(parts[0]), int(parts[1])
        except ValueError:
            continue
        rows.append((parts[2], self_us, cumulative))
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=40, help="samples per series")
    p.add_argument("--importtime", action="store_true",
                   help="break down sr_get_driver_info imports with -X importtime")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="srkit-bench-") as workdir:
        bench = Bench(workdir)
        try:
            series = dict((name, []) for name in
                          ("bare", "sr_get_driver_info", "vdi_create", "vdi_snapshot"))
            run = {"bare": bench.bare, "sr_get_driver_info": bench.driver_info,
                   "vdi_create": bench.vdi_create, "vdi_snapshot": bench.vdi_snapshot}
            for name in run:        # warm caches (page cache, pyc) outside the samples
                run[name]()
            bench.tidy()
            for i in range(args.n):
                # interleaved, bare before each driver sample
                for name in ("sr_get_driver_info", "vdi_create", "vdi_snapshot"):
                    series["bare"].append(bench.bare())
                    series[name].append(run[name]())
                if len(bench.made) >= 20:
                    bench.tidy()
            info_doc, env = bench.info_doc, bench.env
        finally:
            bench.close()

        bare_med = quantile(series["bare"], 0.5)
        bare_p90 = quantile(series["bare"], 0.9)
        print("LocalSR invocation latency, %d samples per series (python %s)" % (
            args.n, subprocess.check_output([PYTHON, "-c", "import sys; print(sys.version.split()[0])"]
                                            ).decode().strip()))
        print("%-20s %10s %10s %10s %10s" % ("operation", "median ms", "p90 ms",
                                              "x bare med", "x bare p90"))
        for name, samples in series.items():
            med, p90 = quantile(samples, 0.5), quantile(samples, 0.9)
            print("%-20s %10.2f %10.2f %10.2f %10.2f" % (
                name, med * 1000, p90 * 1000, med / bare_med, p90 / bare_p90))
        ratio = quantile(series["sr_get_driver_info"], 0.5) / bare_med
        verdict = "OK" if ratio <= TARGET else "ABOVE TARGET"
        print("sr_get_driver_info: %.2fx bare (target <= %.1fx): %s" % (ratio, TARGET, verdict))

        if args.importtime or ratio > TARGET:
            rows = importtime(info_doc, env)
            total = sum(s for _, s, _ in rows)
            ours = [(m, s, c) for m, s, c in rows
                    if m.split(".")[0].strip() in ("framework", "drivers")]
            print("\nimports during sr_get_driver_info: %.2f ms in %d modules; srkit's own:"
                  % (total / 1000.0, len(rows)))
            print("%-40s %10s %12s" % ("module", "self ms", "cumul. ms"))
            for module, self_us, cum in sorted(ours, key=lambda r: -r[2]):
                print("%-40s %10.2f %12.2f" % (module, self_us / 1000.0, cum / 1000.0))
            heavy = sorted(rows, key=lambda r: -r[1])[:12]
            print("\nheaviest modules by self time:")
            for module, self_us, cum in heavy:
                print("%-40s %10.2f %12.2f" % (module, self_us / 1000.0, cum / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
