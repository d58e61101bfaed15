"""Bad input to sm_drivers/LocalSR: exact fault codes, exit status 0, one
well-formed methodResponse on stdout, empty stderr, and nothing created on the
backend nor in xapi."""
import os
import uuid as uuidlib

import pytest

from protocol_rig import MiB, checked
from simulator import XapiError, sm_exec

GOOD_ARGS = ["1048576", "name", "", "", "false", "19700101T00:00:00Z", "", "false"]


def create_args(size="1048576", name="name", description=""):
    args = list(GOOD_ARGS)
    args[0], args[1], args[2] = size, name, description
    return args


def expect_fault(local, document, code, needle=None):
    """Run a raw document; assert the fault and that neither the backend nor the
    pool's VDIs changed."""
    files, vdis = local.listing(), local.vdi_uuids()
    value, fault = local.raw(document)
    assert fault is not None, "expected fault %d, got %r" % (code, value)
    assert fault[0] == code, fault
    if needle is not None:
        assert needle in fault[1], fault
    assert local.listing() == files, "a failed call changed the backend"
    assert local.vdi_uuids() == vdis, "a failed call changed xapi's VDIs"
    return fault


# --- not a request at all -----------------------------------------------------------------

@pytest.mark.parametrize("document", [
    "garbage",
    "",
    "   ",
    "<methodCall>",
    "<methodCall><methodName>vdi_create</methodName><params><param><value><struct>",
    "<?xml version='1.0'?><methodResponse><params><param><value><nil/></value></param>"
    "</params></methodResponse>",
    "<methodCall><params><param><value><struct/></value></param></params></methodCall>",
    "<methodCall><methodName>sr_scan</methodName><params/></methodCall>",
    "<methodCall><methodName>sr_scan</methodName><params><param><value>x</value></param>"
    "</params></methodCall>",
    "<methodCall><methodName>sr_scan</methodName><params><param><value><struct/></value>"
    "</param><param><value><struct/></value></param></params></methodCall>",
    "<methodCall><methodName>sr_scan</methodName><params><param><value><struct/></value>"
    "</param></params></methodCall><methodCall/>",
    "<methodCall><methodName>sr_scan</methodName><params><param><value><struct><member>"
    "<name>command</name><value>vdi_delete</value></member></struct></value></param>"
    "</params></methodCall>",
    "<methodCall><methodName>sr_scan</methodName><params><param><value><struct><member>"
    "<name>args</name><value><array><data><value><int>1</int></value></data></array>"
    "</value></member></struct></value></param></params></methodCall>",
    "<methodCall><methodName>sr_scan</methodName><params><param><value><struct><member>"
    "<name>device_config</name><value>location</value></member></struct></value></param>"
    "</params></methodCall>",
    "<methodCall><methodName>sr_scan</methodName><params><param><value><bogus/></value>"
    "</param></params></methodCall>",
], ids=["text", "empty", "blank", "open-root", "truncated", "response", "no-method",
        "no-param", "string-param", "two-params", "two-roots", "command-mismatch",
        "int-args", "dc-not-struct", "unknown-element"])
def test_garbage_is_bad_request(local, document):
    expect_fault(local, document, 143)


@pytest.mark.parametrize("argv", [[], ["<methodCall/>", "<methodCall/>"], ["a", "b", "c"]],
                         ids=["zero", "two", "three"])
def test_argument_count_is_bad_request(local, argv):
    if len(argv) == 2:
        argv = [local.document("sr_scan")] * 2   # two well-formed documents
    files = local.listing()
    value, fault = checked(*local.run_argv(argv))
    assert fault is not None and fault[0] == 143, (value, fault)
    assert local.listing() == files


def test_unknown_command_raw(local):
    expect_fault(local, local.document("sr_frobnicate"), 143, "sr_frobnicate")


def test_unknown_command_through_xapi(local):
    with pytest.raises(XapiError) as e:
        local.pool.call("vdi_frobnicate", sr=local.sr)
    assert e.value.code == "SR_BACKEND_FAILURE_143"


@pytest.mark.parametrize("command", ["sr_content_type", "vdi_compose", "vdi_enable_cbt",
                                     "vdi_list_changed_blocks"])
def test_known_but_unimplemented_is_38(local, command):
    expect_fault(local, local.document(command), 38)


@pytest.mark.parametrize("key", ["sr_uuid", "session_ref"])
def test_missing_request_key_is_bad_request(local, key):
    keys = local.keys()
    del keys[key]
    keys["args"] = create_args()
    doc = sm_exec.encode_call("vdi_create", sm_exec.build_request("vdi_create", **keys))
    expect_fault(local, doc, 143, key)


def test_master_only_command_on_a_supporter_is_refused(local):
    doc = local.document("vdi_create", create_args(),
                         device_config={"SRmaster": "false", "location": local.location})
    expect_fault(local, doc, 202, "master")


# --- device-config ------------------------------------------------------------------------------

def test_sr_create_without_location_is_115(fresh):
    files = fresh.listing()
    with pytest.raises(XapiError) as e:
        fresh.pool.sr_create("local", {}, name_label="no location")
    assert e.value.code == "SR_BACKEND_FAILURE_115"
    assert "location" in e.value.params[1]
    assert fresh.listing() == files


def test_sr_create_with_empty_location_is_115(fresh):
    with pytest.raises(XapiError) as e:
        fresh.pool.sr_create("local", {"location": ""})
    assert e.value.code == "SR_BACKEND_FAILURE_115" and "location" in e.value.params[1]


@pytest.mark.parametrize("command,args", [("sr_attach", []), ("sr_scan", []),
                                          ("vdi_create", create_args()), ("sr_probe", [])])
def test_missing_location_is_115(local, command, args):
    doc = local.document(command, args, device_config={"SRmaster": "true"})
    expect_fault(local, doc, 115, "location")


def test_sr_create_on_missing_directory_is_47(fresh):
    with pytest.raises(XapiError) as e:
        fresh.pool.sr_create("local", {"location": os.path.join(fresh.base, "nowhere")})
    assert e.value.code == "SR_BACKEND_FAILURE_47"
    assert not os.path.exists(os.path.join(fresh.base, "nowhere"))


# --- unknown VDI ------------------------------------------------------------------------------------

@pytest.fixture
def ghost(local):
    ref = local.pool.db.create("VDI", SR=local.sr, uuid=str(uuidlib.uuid4()),
                               location=str(uuidlib.uuid4()), virtual_size=str(MiB))
    yield ref
    if ref in local.pool.db.refs("VDI"):
        local.pool.db.delete("VDI", ref)


@pytest.mark.parametrize("command,args", [
    ("vdi_attach", ["true"]), ("vdi_snapshot", []), ("vdi_clone", []),
    ("vdi_resize", [str(2 * MiB)]), ("vdi_update", []), ("vdi_revert", None),
])
def test_unknown_vdi_is_vdi_missing(local, ghost, command, args):
    if args is None:   # revert: the snapshot is missing, the target is real
        target = local.pool.vdi_create(local.sr, MiB)
        args = [target]
    files = local.listing()
    with pytest.raises(XapiError) as e:
        local.pool.call(command, vdi=ghost, args=args, driver_params={})
    assert e.value.code == "VDI_MISSING", e.value
    assert e.value.params == [local.sr, ghost]
    assert local.listing() == files
    if command == "vdi_revert":
        local.pool.vdi_destroy(target)


def test_unknown_location_with_a_real_uuid_is_vdi_missing(local):
    """The location, not the uuid, names the backend object."""
    vdi = local.pool.vdi_create(local.sr, MiB)
    doc = local.document("vdi_attach", ["true"], vdi=vdi, vdi_location="no-such-volume")
    expect_fault(local, doc, 144, "no-such-volume")
    local.pool.vdi_destroy(vdi)


def test_delete_of_a_vanished_vdi_forgets_it(local, ghost):
    """vdi_delete is idempotent: the volume is already gone, xapi's row goes too."""
    local.pool.vdi_destroy(ghost)
    assert ghost not in local.pool.db.refs("VDI")


def test_generate_config_of_unknown_vdi_fails(local, ghost):
    with pytest.raises(XapiError):
        local.pool.vdi_generate_config(ghost)


def test_vdi_introduce_of_nothing_is_46(local):
    files, vdis = local.listing(), local.vdi_uuids()
    with pytest.raises(XapiError) as e:
        local.pool.vdi_introduce(local.sr, str(uuidlib.uuid4()), "nothing-here")
    assert e.value.code == "SR_BACKEND_FAILURE_46"
    assert (local.listing(), local.vdi_uuids()) == (files, vdis)


# --- sizes ---------------------------------------------------------------------------------------------

BAD_SIZES = {
    "negative": ("-1", "negative"),
    "negative-big": ("-10737418240", "negative"),
    "huge": ("99999999999999999999999999", "maximum"),
    "above-max": (str(16 * 1024 ** 4 + 1), "maximum"),
    "non-numeric": ("ten", "whole number"),
    "float": ("1.5", "whole number"),
    "hex": ("0x100000", "whole number"),
    "exponent": ("1e6", "whole number"),
    "empty": ("", "whole number"),
}


@pytest.mark.parametrize("case", sorted(BAD_SIZES))
def test_vdi_create_bad_size_is_79(local, case):
    size, needle = BAD_SIZES[case]
    expect_fault(local, local.document("vdi_create", create_args(size), vdi_type="user"),
                 79, needle)


def test_vdi_create_without_args_is_79(local):
    expect_fault(local, local.document("vdi_create", [], vdi_type="user"), 79)


@pytest.mark.parametrize("size", [" 1048576", "1_048_576", "\u0661\u0660\u0662\u0664"],
                         ids=["blank", "underscores", "arabic-indic"])
def test_vdi_create_non_ascii_decimal_size_is_79(local, size):
    expect_fault(local, local.document("vdi_create", create_args(size), vdi_type="user"), 79)


@pytest.mark.parametrize("case", sorted(BAD_SIZES))
def test_vdi_resize_bad_size_is_79_and_keeps_size(local, case):
    size, _ = BAD_SIZES[case]
    vdi = local.pool.vdi_create(local.sr, 2 * MiB)
    raw = os.path.join(local.sr_dir, local.pool.vdi_record(vdi)["location"] + ".raw")
    try:
        expect_fault(local, local.document("vdi_resize", [size], vdi=vdi), 79)
        assert local.pool.vdi_record(vdi)["virtual_size"] == str(2 * MiB)
        assert os.path.getsize(raw) == 2 * MiB
    finally:
        local.pool.vdi_destroy(vdi)


def test_vdi_resize_shrink_is_79_and_keeps_size(local):
    vdi = local.pool.vdi_create(local.sr, 4 * MiB)
    raw = os.path.join(local.sr_dir, local.pool.vdi_record(vdi)["location"] + ".raw")
    with pytest.raises(XapiError) as e:
        local.pool.vdi_resize(vdi, MiB)
    assert e.value.code == "SR_BACKEND_FAILURE_79"
    assert local.pool.vdi_record(vdi)["virtual_size"] == str(4 * MiB)
    assert os.path.getsize(raw) == 4 * MiB
    local.pool.vdi_destroy(vdi)


@pytest.mark.parametrize("size", ["-1", "lots", "1.5", ""])
def test_sr_create_bad_physical_size_creates_nothing(fresh, size):
    files = fresh.listing()
    sr = fresh.pool.db.create("SR", type="local", name_label="bad size")
    with pytest.raises(XapiError) as e:
        fresh.pool.call("sr_create", sr=sr, args=[size],
                        device_config={"SRmaster": "true", "location": fresh.location})
    assert e.value.code == "SR_BACKEND_FAILURE_79"
    assert fresh.listing() == files


# --- names ---------------------------------------------------------------------------------------------

# (how the name travels in the document, as a replacement for the text "NAME")
ILLEGAL_NAMES = {
    "U+FFFE": "bad\ufffe",
    "U+FFFF": "bad\uffff",
    "control-char": "bad\x01name",
    "char-ref-control": "bad&#1;name",
    "char-ref-hex-control": "bad&#x1f;name",
    "char-ref-FFFE": "bad&#xFFFE;name",
    "char-ref-surrogate": "bad&#xD800;name",
    "char-ref-beyond-unicode": "bad&#x110000;name",
}


@pytest.mark.parametrize("where", ["name", "description"])
@pytest.mark.parametrize("case", sorted(ILLEGAL_NAMES))
def test_xml_illegal_name_is_447(local, case, where):
    args = create_args(name="NAME" if where == "name" else "n",
                       description="NAME" if where == "description" else "")
    doc = local.document("vdi_create", args, vdi_type="user")
    doc = doc.replace("<value>NAME</value>", "<value>%s</value>" % ILLEGAL_NAMES[case])
    expect_fault(local, doc, 447)


def test_legal_unusual_name_round_trips(local):
    name = "d\u00e9j\u00e0 <vu> & \"quoted\" \u2603 \U0001F600 \t tab"
    vdi = local.pool.vdi_create(local.sr, MiB, name_label=name, name_description=name)
    assert local.pool.vdi_record(vdi)["name_label"] == name
    location = local.pool.vdi_record(vdi)["location"]
    local.pool.db.delete("VDI", vdi)
    local.pool.sr_scan(local.sr)
    back = [r for r in local.pool.records("VDI") if r["location"] == location]
    assert back and back[0]["name_label"] == name and back[0]["name_description"] == name
    local.pool.vdi_destroy(local.pool.by_uuid("VDI", back[0]["uuid"]))


@pytest.mark.parametrize("vdi_type", ["cbt_metadata", "nonsense", "USER"])
def test_vdi_create_unknown_type_is_66(local, vdi_type):
    expect_fault(local, local.document("vdi_create", create_args(), vdi_type=vdi_type), 66)


@pytest.mark.parametrize("bad_uuid", ["../escape", "not-a-uuid", "../../abs"])
def test_vdi_create_with_malformed_uuid_leaves_nothing(local, bad_uuid):
    parent = os.path.dirname(local.location)
    around, files = sorted(os.listdir(parent)), local.listing()
    value, fault = checked(*local.pool.run_raw("local", local.document(
        "vdi_create", create_args(), vdi_type="user", vdi_uuid=bad_uuid)))
    assert fault is not None, value
    assert sorted(os.listdir(parent)) == around
    assert local.listing() == files


def test_vdi_create_with_path_uuid_is_rejected_before_the_backend(local, tmp_path):
    victim = tmp_path / "victim"
    (tmp_path / "victim.json").write_text("precious")
    value, fault = checked(*local.pool.run_raw("local", local.document(
        "vdi_create", create_args(), vdi_type="user", vdi_uuid=str(victim))))
    assert (tmp_path / "victim.json").exists(), "an unrelated file was deleted"
    assert (tmp_path / "victim.json").read_text() == "precious"
    assert fault is not None and fault[0] == 143, fault


# --- the SR vanished --------------------------------------------------------------------------------

def test_scan_of_a_vanished_sr_fails_and_forgets_nothing(fresh):
    vdi = fresh.pool.vdi_create(fresh.sr, MiB, name_label="precious")
    hidden = fresh.sr_dir + ".unmounted"
    os.rename(fresh.sr_dir, hidden)
    try:
        with pytest.raises(XapiError) as e:
            fresh.pool.sr_scan(fresh.sr)
        assert e.value.code == "SR_BACKEND_FAILURE_47"
        assert fresh.pool.vdi_record(vdi)["name_label"] == "precious"
    finally:
        os.rename(hidden, fresh.sr_dir)
    fresh.pool.sr_scan(fresh.sr)
    assert fresh.pool.vdi_record(vdi)["name_label"] == "precious"
