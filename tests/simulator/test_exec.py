"""Running drivers: argv, environment, reply parsing, fault mapping, discovery,
capability gating, master-only commands and the pool flows."""
import json
import os
import xmlrpc.client

import pytest

from fake_drivers import ALL_CAPS, FAKE_DRIVER, script, write_driver
from simulator import Pool, XapiError
from simulator.sm_exec import CallRecord, map_fault, parse_reply


def requests(pool, host=None):
    dirs = pool.host_dirs(host or pool.master)
    with open(os.path.join(dirs["state"], "requests.log")) as f:
        return [json.loads(line) for line in f]


# -- reply parsing and fault mapping -------------------------------------------
def reply(rc=0, out="", err=""):
    return CallRecord(command="x", executable="x", document="", returncode=rc, stdout=out,
                      stderr=err)


@pytest.mark.parametrize("code,xapi_code", [
    (38, "SR_OPERATION_NOT_SUPPORTED"), (39, "SR_NOT_EMPTY"), (24, "VDI_IN_USE"),
    (16, "SR_DEVICE_IN_USE"), (144, "VDI_MISSING"), (46, "SR_BACKEND_FAILURE_46")])
def test_fault_mapping(code, xapi_code):
    out = xmlrpc.client.dumps(xmlrpc.client.Fault(code, "msg"), "", True)
    with pytest.raises(XapiError) as e:
        parse_reply(reply(out=out, err="warn"), "OpaqueRef:sr", "OpaqueRef:vdi")
    assert e.value.code == xapi_code
    if code == 46:
        assert e.value.params == ["", "msg", "warn"]
    if code == 144:
        assert e.value.params == ["OpaqueRef:sr", "OpaqueRef:vdi"]


def test_bad_output_shapes():
    with pytest.raises(XapiError) as e:
        parse_reply(reply(rc=1, out="o", err="e"))
    assert (e.value.code, e.value.params) == ("SR_BACKEND_FAILURE", ["non-zero exit", "o", "e"])
    with pytest.raises(XapiError) as e:
        parse_reply(reply(out="hello" + xmlrpc.client.dumps((None,), "", True, allow_none=True)))
    assert e.value.code == "SR_BACKEND_FAILURE" and e.value.params[1].startswith("hello")
    assert map_fault(xmlrpc.client.Fault(115, "m"), "").code == "SR_BACKEND_FAILURE_115"


# -- real processes -------------------------------------------------------------
def test_exact_invocation(pool, sr):
    pool.vdi_create(sr, 1024, name_label="disk")
    req = requests(pool)[-1]
    assert req["argv"] == 2 and req["command"] == "vdi_create"
    env = req["env"]
    assert env["PATH"] == "/sbin:/usr/sbin:/bin:/usr/bin" and env["ORIGINATOR"] == "SM"
    assert set(env) - {"PATH", "ORIGINATOR", "SRKIT_XAPI_SOCKET", "SRKIT_LOCK_DIR",
                       "SRKIT_STATE_DIR", "SRKIT_LOG_FILE", "PWD", "LC_CTYPE", "_"} == set()
    r = req["req"]
    assert list(r["device_config"])[0] == "SRmaster" and r["device_config"]["SRmaster"] == "true"
    assert r["args"] == ["1024", "disk", "", "", "false", "19700101T00:00:00Z", "", "false"]
    assert r["vdi_type"] == "user" and r["vdi_sm_config"] == {}
    assert pool.last_call.stderr == "" and pool.last_call.seconds > 0
    # the session was destroyed after the call
    assert pool.records("session") == []


def test_shared_sr_on_two_hosts(pool, sr):
    pbds = [pool.record("PBD", p) for p in pool.sr_record(sr)["PBDs"]]
    assert sorted(p["host"] for p in pbds) == sorted(pool.hosts)
    assert all(p["currently_attached"] and "SRmaster" not in p["device_config"] for p in pbds)
    vdi = pool.vdi_create(sr, 1 << 20)
    slave = pool.hosts[1]
    result = pool.vdi_attach(vdi, host=slave)
    assert result["params"].startswith("/dev/fake/")
    cmds = [(r["command"], r["req"]["device_config"]["SRmaster"], r["req"]["args"])
            for r in requests(pool, slave)]
    assert cmds[-2:] == [("vdi_attach", "false", ["true"]), ("vdi_activate", "false", ["true"])]
    with pytest.raises(XapiError) as e:
        pool.vdi_destroy(vdi)
    assert e.value.code == "VDI_IN_USE"
    pool.vdi_detach(vdi, host=slave)
    assert [r["command"] for r in requests(pool, slave)][-2:] == ["vdi_deactivate", "vdi_detach"]
    with pytest.raises(XapiError) as e:
        pool.call("vdi_resize", host=slave, vdi=vdi, args=["2048"])
    assert e.value.code == "HOST_IS_SLAVE"
    assert pool.host_dirs(slave)["lock"] != pool.host_dirs(pool.master)["lock"]


def test_vdi_flows(pool, sr):
    vdi = pool.vdi_create(sr, 1 << 20, name_label="a", name_description="d")
    snap = pool.vdi_snapshot(vdi, {"epochhint": "x"})
    rec = pool.vdi_record(snap)
    assert rec["is_a_snapshot"] and rec["snapshot_of"] == vdi and rec["name_label"] == "a"
    assert rec["other_config"]["content_id"]
    assert pool.vdi_record(vdi)["snapshots"] == [snap]
    assert [r["command"] for r in requests(pool)][-2:] == ["vdi_snapshot", "vdi_update"]
    clone = pool.vdi_clone(vdi)
    assert not pool.vdi_record(clone)["is_a_snapshot"]
    assert pool.vdi_resize(vdi, 1 << 21) == 1 << 21
    assert pool.vdi_generate_config(vdi) == "<methodCall/>"
    assert "SRlist" in pool.sr_probe("fake", {"location": "/x"})
    probe = requests(pool)[-1]["req"]
    assert "sr_ref" not in probe and probe["sr_sm_config"] == {}
    pool.vdi_destroy(clone)
    assert len(pool.sr_record(sr)["VDIs"]) == 2
    with pytest.raises(XapiError) as e:
        pool.vdi_revert(snap)  # the fake does not advertise VDI_REVERT
    assert e.value.code == "SR_OPERATION_NOT_SUPPORTED"


def test_scan_rebuilds_forgotten_vdis(pool, sr):
    pool.vdi_create(sr, 1 << 20)
    pool.vdi_create(sr, 1 << 20)
    for pbd in pool.sr_record(sr)["PBDs"]:
        pool.pbd_unplug(pbd)
    uuid = pool.sr_record(sr)["uuid"]
    devconf = pool.record("PBD", pool.sr_record(sr)["PBDs"][0])["device_config"]
    pool.sr_forget(sr)
    assert pool.records("VDI") == []
    sr2 = pool.sr_introduce(uuid, "fake", shared=True)
    for host in pool.hosts:
        pool.pbd_plug(pool.pbd_create(host, sr2, devconf))
    pool.sr_scan(sr2)
    assert len(pool.sr_record(sr2)["VDIs"]) == 2


def test_sr_destroy_not_empty_then_empty(pool, sr):
    vdi = pool.vdi_create(sr, 1 << 20)
    with pytest.raises(XapiError) as e:
        pool.sr_destroy(sr)
    assert e.value.code == "SR_HAS_PBD"
    for pbd in pool.sr_record(sr)["PBDs"]:
        pool.pbd_unplug(pbd)
    with pytest.raises(XapiError) as e:
        pool.sr_destroy(sr)
    assert e.value.code == "SR_NOT_EMPTY"
    for pbd in pool.sr_record(sr)["PBDs"]:
        pool.pbd_plug(pbd)
    pool.vdi_destroy(vdi)
    for pbd in pool.sr_record(sr)["PBDs"]:
        pool.pbd_unplug(pbd)
    pool.sr_destroy(sr)
    assert pool.records("SR") == [] and pool.records("PBD") == []


def test_backend_failure_and_failed_create_cleans_up(pool, tmp_path):
    with pytest.raises(XapiError) as e:
        pool.sr_create("fake", {"location": "/x", "fail": "sr_create"})
    assert e.value.code == "SR_BACKEND_FAILURE_46"
    assert e.value.params[1].startswith("The VDI is not available")
    assert pool.records("SR") == [] and pool.records("PBD") == []


def test_bad_drivers(tmp_path):
    sm = tmp_path / "sm"
    sm.mkdir()
    info = script("""
        (req,), cmd = xmlrpc.client.loads(sys.argv[1])
        if cmd == "sr_get_driver_info":
            print(xmlrpc.client.dumps(({"name": "n", "description": "", "vendor": "",
                "copyright": "", "driver_version": "1", "required_api_version": "1.0",
                "capabilities": ["VDI_CREATE", "NONSENSE", "VDI_RESET_ON_BOOT/2", "VDI_CREATE"],
                "configuration": []},), "", True))
            sys.exit(0)
    """)
    write_driver(sm, "Garbage", info + "print('hello')\n")
    write_driver(sm, "Crash", info + "sys.stderr.write('boom')\nsys.exit(3)\n")
    write_driver(sm, "Fault", info + "print(xmlrpc.client.dumps(xmlrpc.client.Fault(115,"
                 " 'Not all required parameters specified'), '', True))\n")
    write_driver(sm, "Int", info + "print(xmlrpc.client.dumps(({'uuid': 'u', 'location': 1},),"
                 " '', True))\n")
    write_driver(sm, "Unparsable", "#!/bin/sh\necho nope\n")
    write_driver(sm, "NotExec", info, executable=False)
    write_driver(sm, "Hidden", info)
    (sm / "HelperSR.py").write_text("# not a driver: does not end in SR\n")
    pool = Pool(tmp_path / "pool", sm_dir=str(sm),
                sm_plugins="garbage CRASH fault int unparsable notexec")
    rejected = pool.discover()
    types = sorted(r["type"] for r in pool.sm_list())
    assert types == ["crash", "fault", "garbage", "int"]
    assert set(rejected) == {"Unparsable", "NotExec", "Hidden"}
    assert "whitelist" in rejected["Hidden"]
    feats = pool.features("fault")
    assert feats == {"VDI_CREATE": "1", "VDI_RESET_ON_BOOT": "2"}

    def err(sr_type):
        sr = pool.sr_introduce("00000000-0000-4000-8000-00000000000%d" % len(pool.hosts
                               + pool.records("SR")), sr_type)
        pool.pbd_create(pool.master, sr, {})
        with pytest.raises(XapiError) as e:
            pool.vdi_create(sr, 1)
        return e.value

    e = err("garbage")
    assert e.code == "SR_BACKEND_FAILURE" and e.params[1] == "hello\n"
    e = err("crash")
    assert (e.code, e.params) == ("SR_BACKEND_FAILURE", ["non-zero exit", "", "boom"])
    e = err("fault")
    assert (e.code, e.params[1]) == ("SR_BACKEND_FAILURE_115",
                                     "Not all required parameters specified")
    e = err("int")
    assert e.code == "SR_BACKEND_FAILURE" and "XML parse failure" in e.params[0]
    # capability gating: no driver call at all
    n = len(pool.calls)
    sr = pool.sr_introduce("00000000-0000-4000-8000-0000000000aa", "fault")
    pool.pbd_create(pool.master, sr, {})
    with pytest.raises(XapiError) as e:
        pool.sr_scan(sr)
    assert e.value.code == "SR_OPERATION_NOT_SUPPORTED"
    with pytest.raises(XapiError) as e:
        pool.sr_probe("crash", {})
    assert e.value.code == "SR_BACKEND_FAILURE" and "sr_probe" in e.value.params[0]
    assert len(pool.calls) == n
    with pytest.raises(XapiError) as e:
        pool.sr_create("nosuch", {})
    assert e.value.code == "SR_UNKNOWN_DRIVER"


def test_run_raw_and_extra_env(tmp_path):
    sm = tmp_path / "sm"
    sm.mkdir()
    write_driver(sm, "Fake", FAKE_DRIVER % {"caps": ALL_CAPS})
    pool = Pool(tmp_path / "p", sm_dir=str(sm), extra_env={"CEPH_ARGS": "--id admin"},
                pythonpath="/some/where")
    rc, out, err = pool.run_raw("fake", "<methodCall><methodName>sr_get_driver_info"
                                "</methodName><params><param><value><struct/></value>"
                                "</param></params></methodCall>")
    assert rc == 0 and "driver_version" in out and err == ""
    env = requests(pool)[-1]["env"]
    assert env["CEPH_ARGS"] == "--id admin" and env["PYTHONPATH"] == "/some/where"
    assert len(env["SRKIT_XAPI_SOCKET"]) < 100
    # settings persist for the next opener (e.g. the CLI)
    assert Pool(tmp_path / "p").config["extra_env"] == {"CEPH_ARGS": "--id admin"}


def test_long_pool_path_gets_short_socket(tmp_path, sm_dir):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    pool = Pool(deep, sm_dir=str(sm_dir))
    sr = pool.sr_create("fake", {"location": "/x"})
    pool.vdi_create(sr, 10)
    assert len(requests(pool)[-1]["env"]["SRKIT_XAPI_SOCKET"]) < 100


def test_concurrent_calls_share_the_server(pool, sr):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:
        refs = list(ex.map(lambda i: pool.vdi_create(sr, 1024, name_label=str(i)), range(8)))
    assert len(set(refs)) == 8 and len(pool.sr_record(sr)["VDIs"]) == 8
    assert pool.records("session") == []
