"""pytest plugin of the conformance suite: the driver under test, its pool, fixtures.

Loaded with ``-p simulator.conformance.plugin``. The driver and its
device-config come from the environment variable ``SRKIT_CONFORMANCE`` (JSON,
written by ``simulator.conformance.run``)::

    {"driver": "/path/to/FooSR", "type": "foo", "device_config": {"k": "v"},
     "hosts": 1, "shared": false, "pythonpath": "auto"}

A device-config value ``@tmpdir`` becomes a fresh empty directory for every SR.

Every test that uses the pool also has each of its driver invocations checked
for wire discipline (§1.6): exit status 0, exactly one methodResponse on stdout,
an empty stderr on success, and the reply shape of the command (§3.1, §3.2).
"""
import json
import os
import re
import warnings

import pytest

from simulator.conformance import helpers as h

ENV = "SRKIT_CONFORMANCE"


class Target:
    """The driver under test, as given on the command line."""

    def __init__(self, driver, type=None, device_config=None, hosts=1, shared=None,
                 pythonpath="auto"):
        self.driver = os.path.abspath(driver)
        base = os.path.basename(self.driver)
        if type:
            self.name = type
        elif base.endswith("SR") and len(base) > 2:
            self.name = base[:-2]
        else:
            self.name = base
        self.type = self.name.lower()
        self.device_config = dict(device_config or {})
        self.hosts = max(1, int(hosts or 1))
        self.shared = (self.hosts > 1) if shared is None else bool(shared)
        self.pythonpath = pythonpath if pythonpath not in ("", "none") else None

    @classmethod
    def from_env(cls):
        raw = os.environ.get(ENV)
        if not raw:
            raise pytest.UsageError(
                "the conformance suite needs a driver: run it with `srkit conformance "
                "--driver PATH --device-config k=v ...` (or set %s)" % ENV)
        return cls(**json.loads(raw))

    def describe(self):
        return "driver %s (type %s), device-config %s, %d host(s), %s SR" % (
            self.driver, self.type, self.device_config, self.hosts,
            "shared" if self.shared else "local")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "requires(*capabilities): skip unless the driver advertises them all")
    config._srkit_target = Target.from_env()


def pytest_report_header(config):
    return "srkit conformance: " + config._srkit_target.describe()


# --- session-wide: the driver and what it advertises -----------------------------------

@pytest.fixture(scope="session")
def target(pytestconfig):
    return pytestconfig._srkit_target


@pytest.fixture(scope="session")
def sm_dir(target, tmp_path_factory):
    """An sm_dir holding only the driver under test, as <Name>SR (xapi's naming)."""
    d = tmp_path_factory.mktemp("sm")
    link = d / (target.name + "SR")
    os.symlink(target.driver, str(link))
    return str(d)


def _new_pool(path, target, sm_dir):
    from simulator.pool import Pool
    return Pool(str(path), sm_dir=sm_dir, hosts=target.hosts, sm_plugins="*",
                pythonpath=target.pythonpath)


@pytest.fixture(scope="session")
def driver_info_run(target, sm_dir, tmp_path_factory):
    """(returncode, stdout, stderr) of sr_get_driver_info sent exactly as xapi sends it."""
    pool = _new_pool(tmp_path_factory.mktemp("info-pool"), target, sm_dir)
    try:
        document = h.request_document("sr_get_driver_info", host_ref=pool.master,
                                      device_config={})
        return pool.run_raw(os.path.join(sm_dir, target.name + "SR"), document)
    finally:
        pool.close()


@pytest.fixture(scope="session")
def driver_info(driver_info_run):
    rc, out, err = driver_info_run
    reply = h.check_discipline("sr_get_driver_info", rc, out, err, fault_ok=False)
    assert isinstance(reply.value, dict), "driver info is not a struct: %r" % (reply.value,)
    return reply.value


@pytest.fixture(scope="session")
def caps(driver_info):
    """{feature: version} of the capabilities xapi would register (unknown ones dropped)."""
    parsed = h.parse_capabilities(driver_info.get("capabilities") or [])
    return dict((k, v) for k, v in parsed.items() if k in h.KNOWN_FEATURES)


@pytest.fixture(autouse=True)
def _requires(request):
    marker = request.node.get_closest_marker("requires")
    if marker is None:
        return
    caps = request.getfixturevalue("caps")
    missing = [c for c in marker.args if c not in caps]
    if missing:
        pytest.skip("driver does not advertise %s" % ", ".join(missing))


# --- per module: a fresh pool ------------------------------------------------------------

class Bench:
    """The pool plus the suite's conveniences; ``bench.pool`` is the simulator Pool."""

    def __init__(self, pool, target, tmp_path_factory):
        self.pool = pool
        self.target = target
        self._tmp = tmp_path_factory
        self.srs = []

    def mark(self):
        """A point in the pool's call history, for ``calls_since``."""
        return list(self.pool.calls)  # holding the records keeps their ids unique

    def calls_since(self, mark):
        seen = set(id(c) for c in mark)
        return [c for c in self.pool.calls if id(c) not in seen]

    def device_config(self):
        """The CLI device-config with every ``@tmpdir`` turned into a fresh directory."""
        dc = {}
        for key, value in self.target.device_config.items():
            if value == "@tmpdir":
                value = str(self._tmp.mktemp("sr-%s" % key))
            dc[key] = value
        return dc

    def make_sr(self, name_label="conformance", device_config=None, **kwargs):
        kwargs.setdefault("shared", self.target.shared)
        dc = self.device_config() if device_config is None else device_config
        sr = self.pool.sr_create(self.target.type, dc, name_label=name_label, **kwargs)
        self.srs.append(sr)
        return sr

    def make_vdi(self, sr, size=8 * h.MiB, name_label="conformance disk", **kwargs):
        return self.pool.vdi_create(sr, size, name_label=name_label, **kwargs)

    def pbd_device_config(self, sr, host=None):
        pool = self.pool
        host = host or pool.master
        for rec in pool.records("PBD"):
            if rec["SR"] == sr and rec["host"] == host:
                return dict(rec["device_config"])
        raise AssertionError("no PBD of SR %s on host %s" % (sr, host))

    def unplug_all(self, sr):
        pool = self.pool
        for pbd in pool.find("PBD", SR=sr):
            pool.pbd_unplug(pbd)

    def forget_vdi(self, vdi):
        """Drop a VDI from xapi's database only (``xe vdi-forget``)."""
        forget = getattr(self.pool, "vdi_forget", None)
        if forget is not None:
            forget(vdi)
        else:
            self.pool.db.delete("VDI", vdi)

    def cleanup(self):
        """Best effort: leave no attached device and no SR behind on the backend."""
        pool = self.pool
        problems = []
        for rec in pool.records("datapath"):
            try:
                pool.vdi_detach(rec["VDI"], host=rec["host"])
            except Exception as e:
                problems.append("detach %s: %s" % (rec["VDI"], e))
        for sr in self.srs:
            try:
                pool.sr_record(sr)
            except Exception:
                continue  # destroyed or forgotten by the test
            try:
                if not any(pool.record("PBD", p)["currently_attached"]
                           for p in pool.find("PBD", SR=sr)):
                    for pbd in pool.find("PBD", SR=sr):
                        pool.pbd_plug(pbd)
                pool.sr_scan(sr)
                # newest first: snapshots and clones before what they came from
                for vdi in reversed(pool.sr_record(sr)["VDIs"]):
                    pool.vdi_destroy(vdi)
                self.unplug_all(sr)
                pool.sr_destroy(sr)
            except Exception as e:
                problems.append("SR %s: %s" % (sr, e))
        if problems:
            warnings.warn("conformance cleanup left things behind: %s" % "; ".join(problems))


@pytest.fixture(scope="module")
def bench(target, sm_dir, tmp_path_factory):
    pool = _new_pool(tmp_path_factory.mktemp("pool"), target, sm_dir)
    b = Bench(pool, target, tmp_path_factory)
    try:
        yield b
    finally:
        try:
            b.cleanup()
        finally:
            pool.close()


@pytest.fixture(scope="module")
def pool(bench):
    return bench.pool


@pytest.fixture(scope="module")
def sr(bench):
    """A shared SR for the non-destructive tests of a module."""
    return bench.make_sr("conformance-%s" % os.getpid())


_METHOD = re.compile(r"<methodName>\s*([^<]*?)\s*</methodName>")


@pytest.fixture(autouse=True)
def _wire_discipline(request):
    """Check every driver invocation the test caused (not only the ones it looks at)."""
    if "pool" not in request.fixturenames:
        yield
        return
    pool = request.getfixturevalue("pool")
    before = list(pool.calls)  # kept alive so that ids stay unique
    yield
    seen = set(id(c) for c in before)
    for call in [c for c in pool.calls if id(c) not in seen]:
        command = call.command
        if command == "raw":
            m = _METHOD.search(call.document or "")
            command = m.group(1) if m else "?"
        h.check_discipline(command, call.returncode, call.stdout, call.stderr)
