"""framework.options, driver capabilities and API version checks, the errors table."""
import re

import pytest

import framework
from framework import driver as contract
from framework import errors
from framework.commands import sr_get_driver_info
from framework.errors import SRError
from framework.options import Option, configuration, is_sensitive, validate
from simulator.sm_exec import KNOWN_FEATURES, parse_driver_info


# --- options.validate --------------------------------------------------------------------------

OPTIONS = (
    Option("location", "where", required=True),
    Option("mode", "how", default="fast", choices=("fast", "safe")),
    Option("password", "pw", required=True, secret=True),
    Option("pool", "which pool"),
)


def no_secrets(uuid):
    raise AssertionError("secret resolved unexpectedly: %s" % uuid)


def test_validate_fills_defaults_and_drops_unknown_keys():
    config = validate(OPTIONS, {"SRmaster": "true", "location": "/x", "password": "p",
                                "other": "y"}, no_secrets)
    assert config == {"location": "/x", "mode": "fast", "password": "p", "pool": None}


def test_validate_names_every_missing_key():
    with pytest.raises(SRError) as e:
        validate(OPTIONS, {"location": ""}, no_secrets)
    assert e.value.code == 115 and e.value.name == "ConfigParamsMissing"
    assert "location" in e.value.message
    assert "password (or password_secret)" in e.value.message
    assert "mode" not in e.value.message and "pool" not in e.value.message


def test_validate_rejects_invalid_choice_with_115():
    with pytest.raises(SRError) as e:
        validate(OPTIONS, {"location": "/x", "password": "p", "mode": "turbo"}, no_secrets)
    assert e.value.code == 115 and "mode=turbo" in e.value.message


def test_validate_resolves_secret_and_prefers_it():
    asked = []

    def resolve(uuid):
        asked.append(uuid)
        return "from-xapi"
    config = validate(OPTIONS, {"location": "/x", "password": "clear",
                                "password_secret": "uuid-1"}, resolve)
    assert asked == ["uuid-1"] and config["password"] == "from-xapi"


def test_secret_suffix_only_for_declared_secrets():
    config = validate(OPTIONS, {"location": "/x", "password": "p", "pool_secret": "u"},
                      no_secrets)
    assert config["pool"] is None


@pytest.mark.parametrize("key,sensitive", [
    ("password", True), ("chap_password", True), ("password_secret", True),
    ("cephx_secret", True), ("passwd", True), ("api_key", True), ("secret", True),
    ("location", False), ("server", False), ("keyring_path", False), ("SRmaster", False)])
def test_is_sensitive(key, sensitive):
    assert is_sensitive(key) is sensitive


def test_configuration_lists_every_option():
    conf = configuration(OPTIONS)
    assert [c["key"] for c in conf] == ["location", "mode", "password", "pool"]
    assert all(isinstance(c["description"], str) for c in conf)
    assert "(required)" in conf[0]["description"] and "password_secret" in conf[2]["description"]


# --- capabilities --------------------------------------------------------------------------------

class Minimal(contract.Driver):
    name = "Minimal"
    max_vdi_size = 1024 ** 4    # VHD-sized; the default (2 TiB) already implies LARGE_VDI

    def sr_create(self, size): pass
    def sr_delete(self): pass
    def sr_stats(self): return 0, 0
    def list(self): return {}
    def create(self, uuid, size, meta): pass
    def destroy(self, uuid): pass
    def set_meta(self, uuid, meta): pass
    def attach(self, uuid, writable): return "/dev/null"
    def detach(self, uuid): pass


class Full(Minimal):
    name = "Full"
    resize_online = True
    thin_provisioning = True
    max_vdi_size = 64 * 1024 ** 4

    def probe(self): return []
    def snapshot(self, uuid, new_uuid, meta): pass
    def clone(self, uuid, new_uuid, meta): pass
    def resize(self, uuid, size): return size
    def revert(self, uuid, snapshot_uuid): pass
    def activate(self, uuid, writable): pass
    def deactivate(self, uuid): pass


class OnlineFlagWithoutResize(Minimal):
    name = "Odd"
    resize_online = True


def test_driver_without_snapshot_does_not_advertise_it():
    caps = contract.capabilities(Minimal)
    for absent in ("VDI_SNAPSHOT", "VDI_CLONE", "VDI_RESIZE", "VDI_RESIZE_ONLINE",
                   "VDI_REVERT", "SR_PROBE", "VDI_ACTIVATE", "VDI_DEACTIVATE",
                   "THIN_PROVISIONING", "LARGE_VDI"):
        assert absent not in caps
    for present in ("SR_CREATE", "SR_SCAN", "VDI_CREATE", "VDI_ATTACH", "VDI_DETACH"):
        assert present in caps


def test_each_primitive_turns_on_its_capability():
    caps = contract.capabilities(Full)
    for present in ("SR_PROBE", "VDI_SNAPSHOT", "VDI_CLONE", "VDI_RESIZE", "VDI_REVERT",
                    "VDI_ACTIVATE", "VDI_DEACTIVATE", "VDI_RESIZE_ONLINE",
                    "THIN_PROVISIONING", "LARGE_VDI"):
        assert present in caps


def test_resize_online_needs_resize():
    assert "VDI_RESIZE_ONLINE" not in contract.capabilities(OnlineFlagWithoutResize)


@pytest.mark.parametrize("cls", [Minimal, Full])
def test_capabilities_are_xapi_names_once(cls):
    caps = contract.capabilities(cls)
    assert len(caps) == len(set(caps))
    assert all(re.match(r"^[A-Z_]+(/[0-9]+)?$", c) for c in caps)
    assert all(c.partition("/")[0] in KNOWN_FEATURES for c in caps)


@pytest.mark.parametrize("cls", [Minimal, Full])
def test_driver_info_parses_like_xapi(cls):
    class Inv(object):
        driver_cls = cls
    info = sr_get_driver_info(Inv())
    sm = parse_driver_info(info)
    assert set(sm["features"]) == set(contract.capabilities(cls))
    assert sm["required_api_version"] == "1.0"
    assert sm["name_label"] == cls.name


def test_local_driver_capabilities():
    from drivers.local.driver import LocalDriver
    caps = contract.capabilities(LocalDriver)
    assert {"VDI_SNAPSHOT", "VDI_CLONE", "VDI_RESIZE", "SR_PROBE"} <= set(caps)
    assert "VDI_ACTIVATE" not in caps


# --- API version + age ---------------------------------------------------------------------------

def test_current_api_version_loads():
    contract.check(Minimal)


@pytest.mark.parametrize("version", [
    framework.API_VERSION + 1, framework.API_VERSION - framework.API_AGE - 1, None, "1", 1.0])
def test_api_version_outside_the_window_is_refused(version):
    cls = type("Versioned", (Minimal,), {"api_version": version})
    with pytest.raises(SRError) as e:
        contract.check(cls)
    assert e.value.code == 48 and "framework API" in e.value.message


def test_missing_primitive_is_refused():
    cls = type("Lazy", (Minimal,), {"detach": contract.Driver.detach})
    with pytest.raises(SRError) as e:
        contract.check(cls)
    assert e.value.code == 48 and "detach" in e.value.message


def test_nameless_driver_is_refused():
    with pytest.raises(SRError) as e:
        contract.check(type("Anon", (Minimal,), {"name": None}))
    assert e.value.code == 48


def test_too_new_driver_gets_a_fault_through_entry(monkeypatch, tmp_path):
    monkeypatch.setenv("SRKIT_LOG_FILE", str(tmp_path / "SMlog"))
    from framework import entry
    import xmlrpc.client
    reply = entry.serve("test_fw_contract:TooNew", ["TooNewSR", xmlrpc.client.dumps(
        ({"command": "sr_get_driver_info", "args": [], "device_config": {}},),
        "sr_get_driver_info")])
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(reply)
    assert e.value.faultCode == 48
    assert "failed 48" in (tmp_path / "SMlog").read_text()


class TooNew(Minimal):
    name = "TooNew"
    api_version = framework.API_VERSION + 1


# --- errors table --------------------------------------------------------------------------------

# smapiv1.md §3.4
REFERENCE = {
    "InvalidArg": 1, "SRInUse": 16, "VDIInUse": 24, "LockErr": 37, "Unimplemented": 38,
    "SRNotEmpty": 39, "SRScan": 40, "SRExists": 42, "VDIExists": 43, "SRNoSpace": 44,
    "VDIUnavailable": 46, "SRUnavailable": 47, "SRUnknownType": 48, "VDIType": 66,
    "VDICreate": 78, "VDISize": 79, "VDIDelete": 80, "VDIClone": 81, "VDISnapshot": 82,
    "SnapshotChainTooLong": 109, "VDIResize": 110, "ConfigParamsMissing": 115,
    "BadRequest": 143, "VDIMissing": 144, "APISession": 150, "APIFailure": 153,
    "EIO": 200, "SMGeneral": 202, "IllegalXMLChar": 447, "GenericException": 1200,
}


def test_error_codes_match_sm():
    for name, code in REFERENCE.items():
        assert errors.ERRORS[name][0] == code, name


def test_error_codes_are_unique():
    codes = [code for code, _ in errors.ERRORS.values()]
    assert len(codes) == len(set(codes))


def test_special_codes_mean_what_xapi_thinks():
    special = dict((code, name) for name, (code, _) in errors.ERRORS.items()
                   if code in (16, 24, 38, 39, 144))
    assert special == {16: "SRInUse", 24: "VDIInUse", 38: "Unimplemented",
                       39: "SRNotEmpty", 144: "VDIMissing"}


def test_srerror_message_format():
    e = SRError("VDIMissing", "no VDI at x")
    assert (e.code, e.name) == (144, "VDIMissing")
    assert e.message == "VDI could not be found [opterr=no VDI at x]"
    assert SRError("SRNotEmpty").message == "The SR is not empty"
    with pytest.raises(KeyError):
        SRError("NoSuchError")
