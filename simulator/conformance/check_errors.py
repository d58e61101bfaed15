"""(d) Error codes xapi gives a meaning to (smapiv1.md §3.4), and bad requests.

Every failure must still be a well-formed fault on stdout with exit status 0
(checked for every call by the plugin).
"""
import os
import subprocess
import uuid as uuidlib

import pytest

from simulator import XapiError, sm_exec
from simulator.conformance import helpers as h

MiB = h.MiB


def _raw(pool, target, document):
    rc, out, err = pool.run_raw(target.type, document)
    return h.check_discipline("raw", rc, out, err)


# --- device-config ------------------------------------------------------------------------

def _removed_keys_named(error, keys):
    text = " ".join(error.params)
    return [k for k in keys if k in text]


@pytest.mark.requires("SR_CREATE")
def test_sr_create_without_device_config_is_115(pool, bench, target):
    keys = list(target.device_config)
    if not keys:
        pytest.skip("the driver was given no device-config to take away")
    with pytest.raises(XapiError) as e:
        sr = pool.sr_create(target.type, {}, name_label="no-config")
        bench.srs.append(sr)
    assert e.value.code == "SR_BACKEND_FAILURE_115", e.value
    assert _removed_keys_named(e.value, keys), \
        "the 115 fault must name the missing key(s) %s: %s" % (keys, e.value)


@pytest.mark.requires("SR_ATTACH")
def test_sr_attach_without_device_config_is_115(pool, bench, sr, target):
    keys = list(target.device_config)
    if not keys:
        pytest.skip("the driver was given no device-config to take away")
    with pytest.raises(XapiError) as e:
        pool.call("sr_attach", sr=sr, device_config={"SRmaster": "true"})
    assert e.value.code == "SR_BACKEND_FAILURE_115", e.value
    assert _removed_keys_named(e.value, keys), e.value


@pytest.mark.requires("SR_PROBE")
def test_sr_probe_without_device_config_is_115(pool, target):
    keys = list(target.device_config)
    if not keys:
        pytest.skip("the driver was given no device-config to take away")
    with pytest.raises(XapiError) as e:
        pool.sr_probe(target.type, {})
    assert e.value.code == "SR_BACKEND_FAILURE_115", e.value
    assert _removed_keys_named(e.value, keys), e.value


# --- VDI that does not exist --------------------------------------------------------------

@pytest.fixture
def ghost(pool, sr):
    """A VDI xapi knows but the backend never had (stale DB row)."""
    ref = pool.db.create("VDI", SR=sr, uuid=str(uuidlib.uuid4()),
                         location="conformance-missing-%s" % uuidlib.uuid4(),
                         virtual_size=str(MiB), name_label="ghost")
    yield ref
    if ref in pool.db.refs("VDI"):
        pool.db.delete("VDI", ref)


OPS = {
    "vdi_attach": ("VDI_ATTACH", lambda p, v: p.call("vdi_attach", vdi=v, args=["true"])),
    "vdi_snapshot": ("VDI_SNAPSHOT", lambda p, v: p.call("vdi_snapshot", vdi=v,
                                                         driver_params={})),
    "vdi_clone": ("VDI_CLONE", lambda p, v: p.call("vdi_clone", vdi=v, driver_params={})),
    "vdi_resize": ("VDI_RESIZE", lambda p, v: p.call("vdi_resize", vdi=v,
                                                     args=[str(2 * MiB)])),
    "vdi_update": ("VDI_UPDATE", lambda p, v: p.call("vdi_update", vdi=v)),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_unknown_vdi_location_is_vdi_missing(pool, ghost, caps, op):
    cap, run = OPS[op]
    if cap not in caps:
        pytest.skip("driver does not advertise %s" % cap)
    with pytest.raises(XapiError) as e:
        run(pool, ghost)
    assert e.value.code == "VDI_MISSING", "%s on a missing VDI: %s (want fault 144)" \
        % (op, e.value)


# --- SR not empty, shrink --------------------------------------------------------------

@pytest.mark.requires("SR_DELETE", "VDI_CREATE")
def test_sr_delete_with_vdis_is_sr_not_empty(pool, bench, caps):
    sr = bench.make_sr("not-empty")
    vdi = bench.make_vdi(sr, MiB, name_label="keep me")
    bench.unplug_all(sr)
    with pytest.raises(XapiError) as e:
        pool.sr_destroy(sr)
    assert e.value.code == "SR_NOT_EMPTY", e.value
    for pbd in pool.find("PBD", SR=sr):
        pool.pbd_plug(pbd)
    if "SR_SCAN" in caps:
        pool.sr_scan(sr)
    assert pool.vdi_record(vdi)["name_label"] == "keep me", "the refused delete lost a VDI"


@pytest.mark.requires("VDI_CREATE", "VDI_RESIZE")
def test_shrink_fails_and_keeps_size(pool, bench, sr, caps):
    vdi = bench.make_vdi(sr, 4 * MiB)
    size = int(pool.vdi_record(vdi)["virtual_size"])
    data = h.pattern(21)
    if "VDI_ATTACH" in caps:
        path = h.device_path(pool.vdi_attach(vdi))
        if path:
            h.write_at(path, 3 * MiB, data[:MiB])
        pool.vdi_detach(vdi)
    with pytest.raises(XapiError) as e:
        pool.vdi_resize(vdi, MiB)
    assert e.value.code.startswith("SR_BACKEND_FAILURE") or e.value.code in (
        "SR_OPERATION_NOT_SUPPORTED",), e.value
    assert int(pool.vdi_record(vdi)["virtual_size"]) == size
    if "SR_SCAN" in caps:
        pool.sr_scan(sr)
        assert int(pool.vdi_record(vdi)["virtual_size"]) == size, "backend size changed"
    if "VDI_ATTACH" in caps:
        path = h.device_path(pool.vdi_attach(vdi))
        try:
            if path:
                assert h.device_size(path) == size
                assert h.read_at(path, 3 * MiB, MiB) == data[:MiB]
        finally:
            pool.vdi_detach(vdi)
    pool.vdi_destroy(vdi)


# --- bad requests ----------------------------------------------------------------------------

def test_unknown_command_is_143(pool, sr):
    with pytest.raises(XapiError) as e:
        pool.call("vdi_frobnicate", sr=sr)
    assert e.value.code == "SR_BACKEND_FAILURE_143", e.value


def test_unknown_command_raw_is_143(pool, target):
    reply = _raw(pool, target, h.request_document(
        "frobnicate", host_ref=pool.master, device_config={}))
    assert reply.code == 143, reply


@pytest.mark.parametrize("document", [
    "garbage",
    "",
    "<methodCall><methodName>sr_scan</methodName>",
    "<methodResponse><params><param><value><nil/></value></param></params></methodResponse>",
    "<methodCall><methodName>sr_get_driver_info</methodName><params><param><value><struct>"
    "</struct></value></param></params></methodCall><methodCall/>",
    "<methodCall><params><param><value><struct/></value></param></params></methodCall>",
], ids=["text", "empty", "truncated", "response", "two-roots", "no-method"])
def test_garbage_is_143(pool, target, document):
    reply = _raw(pool, target, document)
    assert reply.code == 143, reply


@pytest.mark.parametrize("argv", [[], ["a", "b"]], ids=["no-argument", "two-arguments"])
def test_wrong_argument_count_is_143(target, sm_dir, argv, tmp_path):
    """xapi passes exactly one argument; anything else is BadRequest (§1.6)."""
    from simulator.driver_calls import runtime_pythonpath
    pp = runtime_pythonpath() if target.pythonpath == "auto" else target.pythonpath
    env = sm_exec.driver_env({"SRKIT_LOCK_DIR": str(tmp_path / "lock"),
                              "SRKIT_STATE_DIR": str(tmp_path / "state"),
                              "SRKIT_LOG_FILE": str(tmp_path / "SMlog")}, None, pp)
    if argv:
        argv = [h.request_document("sr_get_driver_info", host_ref="OpaqueRef:NULL",
                                   device_config={})] * 2
    proc = subprocess.run([os.path.join(sm_dir, target.name + "SR")] + argv,
                          stdin=subprocess.DEVNULL, capture_output=True, env=env)
    reply = h.check_discipline("argv", proc.returncode, proc.stdout.decode(),
                               proc.stderr.decode())
    assert reply.code == 143, reply
