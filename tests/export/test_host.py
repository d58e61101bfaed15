"""The host-side entry points, run against the simulator's XenAPI server the way
they run against a host's xapi: `python3 -m framework.export.host` and the xapi
plugin `plugins/srkit` (its functions; XenAPIPlugin is not on this machine)."""
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import time

import pytest

from export_rig import MiB, apply, pattern
from simulator.testkit import REPO

SIZE = 16 * MiB


@pytest.fixture
def host_env(local_sr, tmp_path):
    pool = local_sr.pool
    dirs = pool.host_dirs(pool.master)
    with pool.server.running() as socket_path:
        yield dict(os.environ, SRKIT_XAPI_SOCKET=socket_path, SRKIT_LOCK_DIR=dirs["lock"],
                   SRKIT_STATE_DIR=dirs["state"], PYTHONPATH=REPO,
                   SRKIT_LOG_FILE=os.path.join(pool.path, "SMlog"),
                   SRKIT_JOB_DIR=str(tmp_path / "jobs"))


def host(env, *args):
    return subprocess.run(["/usr/bin/python3", "-m", "framework.export.host"] + list(args),
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")


def test_host_export_and_import_by_uuid(local_sr, host_env, tmp_path):
    sr = local_sr
    vdi = sr.create(SIZE)
    pieces = pattern("sparse", SIZE)
    sr.write(vdi, pieces)
    out = str(tmp_path / "d.vhd.zst")
    status = str(tmp_path / "status.json")
    proc = host(host_env, "vdi-export", "uuid=" + vdi, "filename=" + out, "format=vhd",
                "--status", status)
    assert proc.returncode == 0, proc.stderr
    record = json.load(open(status))
    assert record["state"] == "done" and record["done"] == record["total"] > 0
    target = sr.create(SIZE)
    proc = host(host_env, "vdi-import", "uuid=" + target, "filename=" + out)
    assert proc.returncode == 0, proc.stderr
    assert sr.read(target) == apply(bytes(SIZE), pieces)


def test_srkit_vdi_export_subcommand(local_sr, host_env, tmp_path):
    """`srkit vdi-export` (what the host's /usr/bin/srkit offers) runs the host module."""
    vdi = local_sr.create(SIZE)
    out = str(tmp_path / "d.raw")
    proc = subprocess.run(["/usr/bin/python3", "-c", "import sys; from framework import cli; "
                           "sys.exit(cli.main())", "vdi-export", "uuid=" + vdi,
                           "filename=" + out, "compression=none"],
                          env=host_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")
    assert proc.returncode == 0, proc.stderr
    assert os.path.getsize(out) == SIZE


def test_host_errors_are_clear(local_sr, host_env, tmp_path):
    vdi = local_sr.create(SIZE)
    status = str(tmp_path / "status.json")
    proc = host(host_env, "vdi-export", "uuid=" + vdi, "filename=" + str(tmp_path / "x"),
                "format=vmdk", "--status", status)
    assert proc.returncode == 1 and b"vmdk" in proc.stderr
    assert json.load(open(status))["state"] == "failed"
    proc = host(host_env, "vdi-export", "uuid=00000000-0000-4000-8000-000000000000",
                "filename=" + str(tmp_path / "x"))
    assert proc.returncode == 1 and proc.stderr.startswith(b"Error: ")


def _plugin():
    loader = importlib.machinery.SourceFileLoader("srkit_plugin",
                                                  os.path.join(REPO, "plugins", "srkit"))
    spec = importlib.util.spec_from_loader("srkit_plugin", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_plugin_export_job_and_progress(local_sr, host_env, tmp_path, monkeypatch):
    sr = local_sr
    vdi = sr.create(SIZE)
    sr.write(vdi, pattern("dense", SIZE))
    for key in ("SRKIT_XAPI_SOCKET", "SRKIT_LOCK_DIR", "SRKIT_STATE_DIR", "SRKIT_LOG_FILE",
                "SRKIT_JOB_DIR"):
        monkeypatch.setenv(key, host_env[key])
    plugin = _plugin()
    monkeypatch.setattr(plugin, "PYTHON", "/usr/bin/python3")   # as on a host
    out = str(tmp_path / "d.qcow2.zst")
    job = plugin.vdi_export(None, {"uuid": vdi, "filename": out, "format": "qcow2"})
    deadline = time.time() + 60
    while True:
        record = json.loads(plugin.progress(None, {"job": job}))
        if record["state"] in ("done", "failed") or time.time() > deadline:
            break
        time.sleep(0.2)
    assert record["state"] == "done", record
    assert record["done"] == record["total"] == SIZE
    assert os.path.getsize(out) > 0
    with pytest.raises(ValueError):
        plugin.vdi_export(None, {"uuid": vdi, "filename": "-"})
    with pytest.raises(ValueError):
        plugin.progress(None, {"job": "../../etc/passwd"})


def test_simulated_xapi_creates_and_destroys_vdis_through_the_driver(local_sr):
    """VDI.create / VDI.destroy (what the host command's `sr-uuid=` import calls) run
    the SR's driver, as xapi does: the backend file appears and goes."""
    from simulator.errors import XapiError
    pool = local_sr.pool
    api = pool.server.api
    session = api.call("session.login_with_password", ["root", "", "1.0", "test"])
    record = {"SR": local_sr.ref, "virtual_size": str(SIZE), "name_label": "new",
              "name_description": "", "type": "user", "sharable": False, "read_only": False,
              "other_config": {}, "xenstore_data": {}, "sm_config": {}, "tags": []}
    def files():
        return set(os.path.join(d, f) for d, _, names in os.walk(local_sr.root) for f in names)
    before = files()
    ref = api.call("VDI.create", [session, record])
    rec = pool.vdi_record(ref)
    assert rec["name_label"] == "new" and int(rec["virtual_size"]) == SIZE
    assert files() != before
    api.call("VDI.destroy", [session, ref])
    assert files() == before
    assert rec["uuid"] not in local_sr.vdi_uuids()
    with pytest.raises(XapiError) as e:
        api.call("VDI.create", [session, dict(record, SR="OpaqueRef:nope")])
    assert e.value.code == "HANDLE_INVALID"


def test_host_job_device_config_is_a_driver_calls(tmp_path, monkeypatch):
    """The host command builds its job's device-config as xapi builds a driver call's:
    on each host, the same keys in the same order, SRmaster true only on the SR master
    (the pool master for a shared SR, the owner of a local one even when it is not the
    pool master)."""
    from framework.export.host import Host
    from simulator.testkit import sim_pool
    with sim_pool(str(tmp_path / "pool"), hosts=2) as pool:
        other = [h for h in pool.hosts if h != pool.master][0]
        srs = {}
        for name, shared, owner in (("shared", True, pool.master), ("own", False, other)):
            (tmp_path / name).mkdir()
            srs[name] = pool.sr_create("local", {"location": str(tmp_path / name)},
                                       shared=shared, host=owner)
        got = {}
        with pool.server.running() as socket_path:
            monkeypatch.setenv("SRKIT_XAPI_SOCKET", socket_path)
            for name, sr in srs.items():
                for pbd in pool.find("PBD", SR=sr):
                    host = pool.record("PBD", pbd)["host"]
                    pool.call("sr_update", host=host, sr=sr)
                    call = pool.last_call.request["device_config"]
                    session = pool.session_create(sr, host)
                    try:
                        job = Host(session).job(sr)["device_config"]
                    finally:
                        pool.session_destroy(session)
                    assert list(job.items()) == list(call.items())
                    assert list(job)[0] == "SRmaster"
                    got[name, host == pool.master] = job["SRmaster"]
    assert got == {("shared", True): "true", ("shared", False): "false",
                   ("own", False): "true"}
