"""Per-invocation latency of sm_drivers/LocalSR, as xapi pays it.

Each sample is one driver process: spawn -> reply fully read -> exit, measured
the way the simulator (and forkexecd) run it. Measured, interleaved round by
round so that machine noise hits every series alike:

  bare                 /usr/bin/python3 -c pass  (the floor: interpreter start)
  sr_get_driver_info   LocalSR with xapi's exact document, no session
  vdi_create           through the simulator (only the driver process is timed)
  vdi_snapshot         through the simulator (only the driver process is timed)

Each is reported as median / p90 and as a ratio to bare. Targets (issue 20):
sr_get_driver_info median <= 1.2x bare, vdi_create <= 2.5x bare.

    python3 bench/invoke.py [-n 40] [--importtime]

``--importtime`` also runs sr_get_driver_info and vdi_create under
``python3 -X importtime`` and lists what each module costs to import. Every run
lists the xapi callbacks each command made (each one a round trip on the xapi
socket).
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
TARGETS = {"sr_get_driver_info": 1.2, "vdi_create": 2.5}
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
        self.callbacks = {}    # xe operation -> [[xapi methods its driver calls made]]
        self.seen = []
        api = self.pool.server.api
        served = api.call

        def counted(method, params):
            self.seen.append(method)
            return served(method, params)
        api.call = counted

    def _traced(self, operation, run):
        self.seen = []
        run()
        self.callbacks.setdefault(operation, []).append(self.seen)
        self.seen = []   # what tidy() destroys is not the operation's

    def driver_imports(self, command):
        """-X importtime rows of one ``command`` run by the simulator."""
        import shutil
        from simulator.pool import Pool
        path = os.path.join(self.workdir, "pool-importtime")
        shutil.rmtree(path, ignore_errors=True)
        pool = Pool(path, sm_dir=os.path.dirname(LOCALSR), pythonpath="auto",
                    extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
        try:
            data = os.path.join(self.workdir, "data-importtime")
            os.makedirs(data, exist_ok=True)
            sr = pool.sr_create("local", {"location": data}, name_label="importtime")
            pool.vdi_create(sr, 4 * MiB, name_label="importtime")
            stderr = [c for c in pool.calls if c.command == command][-1].stderr
        finally:
            pool.close()
        return parse_importtime(stderr)

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
        self._traced("VDI.create (vdi_create)", lambda: self.made.append(
            self.pool.vdi_create(self.sr, 4 * MiB, name_label="bench")))
        return self._driver_seconds("vdi_create")

    def vdi_snapshot(self):
        self._traced("VDI.snapshot (vdi_snapshot, vdi_update)", lambda: self.made.append(
            self.pool.vdi_snapshot(self.base)))
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
    """(module, self us, cumulative us) rows of one sr_get_driver_info call."""
    proc = subprocess.run([PYTHON, "-X", "importtime", LOCALSR, doc],
                          stdin=subprocess.DEVNULL, capture_output=True, env=env)
    return parse_importtime(proc.stderr.decode())


def parse_importtime(stderr):
    rows = []
    for line in stderr.splitlines():
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
            callbacks = dict(bench.callbacks)
            create_rows = bench.driver_imports("vdi_create") if args.importtime else []
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
        above = False
        for name, target in TARGETS.items():
            ratio = quantile(series[name], 0.5) / bare_med
            above = above or ratio > target
            print("%s: %.2fx bare (target <= %.1fx): %s"
                  % (name, ratio, target, "OK" if ratio <= target else "ABOVE TARGET"))
        print("\nxapi callbacks the driver makes per operation (each a socket round trip):")
        for operation, runs in sorted(callbacks.items()):
            print("  %-40s %4.1f: %s" % (operation, sum(map(len, runs)) / float(len(runs)),
                                         ", ".join(runs[-1])))

        if args.importtime or above:
            show_imports("sr_get_driver_info", importtime(info_doc, env))
            if create_rows:
                show_imports("vdi_create", create_rows)
    return 0


def show_imports(command, rows):
    total = sum(s for _, s, _ in rows)
    bare = parse_importtime(subprocess.run([PYTHON, "-X", "importtime", "-c", "pass"],
                                           capture_output=True).stderr.decode())
    floor = set(m for m, _, _ in bare)
    extra = [r for r in rows if r[0] not in floor]
    print("\nimports during %s: %.2f ms in %d modules, %.2f ms in the %d that a bare "
          "interpreter does not import:" % (command, total / 1000.0, len(rows),
                                            sum(s for _, s, _ in extra) / 1000.0, len(extra)))
    print("%-40s %10s %12s" % ("module", "self ms", "cumul. ms"))
    for module, self_us, cum in sorted(extra, key=lambda r: -r[1])[:20]:
        print("%-40s %10.2f %12.2f" % (module, self_us / 1000.0, cum / 1000.0))


if __name__ == "__main__":
    sys.exit(main())
