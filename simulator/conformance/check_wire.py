"""(a) Wire shapes: what xapi parses must parse (smapiv1.md §1.4, §1.6, §3)."""
import xml.dom.minidom

import pytest

from simulator.conformance import helpers as h

STRING_FIELDS = ("name", "description", "vendor", "copyright", "driver_version",
                 "required_api_version")


def test_driver_info_process_discipline(driver_info_run):
    rc, out, err = driver_info_run
    assert rc == 0
    assert err == "", "sr_get_driver_info wrote to stderr: %r" % err
    reply = h.parse_reply(out)
    assert reply.fault is None, "sr_get_driver_info failed: %r" % (reply.fault,)


@pytest.mark.parametrize("field", STRING_FIELDS)
def test_driver_info_string_fields(driver_info, field):
    assert isinstance(driver_info.get(field), str), \
        "driver-info %r must be a string, got %r" % (field, driver_info.get(field))
    if field != "description":
        assert driver_info[field], "driver-info %r is empty" % field


def test_driver_info_api_version_is_smapiv1(driver_info):
    assert driver_info["required_api_version"] == "1.0"


def test_driver_info_capabilities_are_strings(driver_info):
    caps = driver_info.get("capabilities")
    assert isinstance(caps, list) and caps, "capabilities must be a non-empty array"
    assert all(isinstance(c, str) for c in caps), caps


def test_capabilities_use_xapi_syntax_and_names(driver_info):
    caps = driver_info["capabilities"]
    bad_syntax = [c for c in caps if not h.CAPABILITY_SYNTAX.match(c)]
    assert not bad_syntax, "capabilities must be NAME or NAME/N (slash, not colon): %s" \
        % bad_syntax
    unknown = [c for c in caps if c.partition("/")[0] not in h.KNOWN_FEATURES]
    assert not unknown, "capabilities unknown to xapi 26.1.4 (it drops them): %s" % unknown
    names = [c.partition("/")[0] for c in caps]
    duplicates = sorted(set(n for n in names if names.count(n) > 1))
    assert not duplicates, "capabilities listed twice: %s" % duplicates


def test_capabilities_are_coherent(caps):
    # xapi sends activate and deactivate as a pair; an SR that can create can delete
    assert ("VDI_ACTIVATE" in caps) == ("VDI_DEACTIVATE" in caps), caps
    assert ("VDI_ATTACH" in caps) == ("VDI_DETACH" in caps), caps
    if "VDI_RESIZE_ONLINE" in caps:
        assert "VDI_RESIZE" in caps
    for needed in ("VDI_CREATE", "VDI_ATTACH"):
        assert needed in caps, "a usable SR advertises %s" % needed


def test_driver_info_configuration(driver_info, target):
    conf = driver_info.get("configuration")
    assert isinstance(conf, list), "configuration must be an array of structs"
    for entry in conf:
        assert isinstance(entry, dict), entry
        assert isinstance(entry.get("key"), str) and entry["key"], entry
        assert isinstance(entry.get("description"), str), entry
    keys = set(e["key"] for e in conf)
    undeclared = [k for k in target.device_config if k not in keys]
    assert not undeclared, "device-config keys used but not declared in configuration: %s" \
        % undeclared


def test_driver_info_registered_by_pool(pool, target, caps):
    sm = [r for r in pool.sm_list(refresh=True) if r["type"] == target.type]
    assert len(sm) == 1, "xapi would not register the driver: %r" % pool.rejected_drivers
    assert set(sm[0]["features"]) == set(caps)


def test_vdi_create_returns_string_vdi_info(pool, bench, sr):
    vdi = bench.make_vdi(sr)
    create = [c for c in pool.calls if c.command == "vdi_create"][-1]
    reply = h.check_discipline("vdi_create", create.returncode, create.stdout, create.stderr,
                               fault_ok=False)
    info = reply.value
    rec = pool.vdi_record(vdi)
    assert info["uuid"] == rec["uuid"]
    assert info["location"] == rec["location"]
    pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_ATTACH")
def test_vdi_attach_returns_params_and_params_nbd(pool, bench, sr):
    vdi = bench.make_vdi(sr)
    try:
        result = pool.vdi_attach(vdi)
        h.check_attach("vdi_attach", result)
        attach = [c for c in pool.calls if c.command == "vdi_attach"][-1]
        assert "<name>params_nbd</name>" in attach.stdout
    finally:
        pool.vdi_detach(vdi)
        pool.vdi_destroy(vdi)


@pytest.mark.requires("SR_PROBE")
def test_sr_probe_returns_srlist_string(pool, bench, sr, target):
    dc = bench.pbd_device_config(sr)
    result = pool.sr_probe(target.type, dc)
    assert isinstance(result, str)
    assert "<SRlist" in result, "sr_probe must return an <SRlist> document: %r" % result
    doc = xml.dom.minidom.parseString(result)
    assert doc.documentElement.tagName == "SRlist"


def test_unit_commands_reply_nil(pool, bench, sr):
    mark = bench.mark()
    vdi = bench.make_vdi(sr)
    pool.sr_update(sr)
    pool.vdi_update(vdi)
    pool.sr_scan(sr)
    pool.vdi_destroy(vdi)
    seen = set()
    for call in bench.calls_since(mark):
        if call.command in h.UNIT_COMMANDS:
            reply = h.check_discipline(call.command, call.returncode, call.stdout,
                                       call.stderr, fault_ok=False)
            assert reply.value is None
            assert "<nil/>" in call.stdout
            seen.add(call.command)
    assert {"sr_update", "vdi_update", "sr_scan", "vdi_delete"} <= seen


def test_every_reply_is_one_document(pool, bench, sr):
    """Each reply of a short session is exactly one XML document on stdout."""
    mark = bench.mark()
    vdi = bench.make_vdi(sr)
    pool.vdi_update(vdi)
    pool.vdi_destroy(vdi)
    calls = bench.calls_since(mark)
    assert len(calls) >= 3
    for call in calls:
        assert call.returncode == 0
        assert call.stderr == ""
        body = call.stdout.strip()
        assert body.count("<methodResponse") == 1 and body.endswith("</methodResponse>"), \
            call.stdout
        h.parse_reply(call.stdout)
