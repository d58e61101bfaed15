"""framework.wire against the reference implementation, xmlrpc.client."""
import xmlrpc.client

import pytest

from framework import wire
from framework.errors import SRError

VALUES = [
    None, True, False, 0, 7, -3, "", "plain", "a & b <c> d's \"e\"", "\u00e9\u2603\U0001F600",
    "tab\tnew\nline", [], ["a", "b"], {}, {"k": "v"},
    {"params": "/dev/loop0", "params_nbd": "", "o_direct": True,
     "xenstore_data": {"vdi-uuid": "u", "scsi/0x12/0x80": "x"}},
    [{"key": "location", "description": "where"}, {"key": "x", "description": ""}],
    {"nested": {"deeper": [[], [{}], ["x", {"y": None}]]}},
]


@pytest.mark.parametrize("value", VALUES, ids=[repr(v)[:30] for v in VALUES])
def test_encode_reply_round_trips_through_xmlrpc_client(value):
    (decoded,), method = xmlrpc.client.loads(wire.encode_reply(value))
    assert method is None
    assert decoded == value
    assert type(decoded) is type(value)


def test_nil_reply_is_what_sm_prints():
    assert "<value><nil/></value>" in wire.encode_reply(None)
    # xapi parses the whole stdout as one document
    assert wire.encode_reply(None).count("<methodResponse>") == 1


def test_encode_fault_round_trips():
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(wire.encode_fault(144, "VDI could not be found [opterr=<x> & y]"))
    assert e.value.faultCode == 144
    assert e.value.faultString == "VDI could not be found [opterr=<x> & y]"


def test_reply_with_xml_illegal_characters_stays_well_formed():
    text = "bad\x01\ufffe char"
    (decoded,), _ = xmlrpc.client.loads(wire.encode_reply(text))
    assert decoded.startswith("bad") and "\x01" not in decoded and "\ufffe" not in decoded
    with pytest.raises(xmlrpc.client.Fault) as e:
        xmlrpc.client.loads(wire.encode_fault(1200, text))
    assert "\x01" not in e.value.faultString


PARAMS = [
    {"command": "sr_scan", "args": [], "device_config": {}},
    {"command": "vdi_create", "args": ["10737418240", "data disk", "", "", "false",
                                       "19700101T00:00:00Z", "", "false"],
     "device_config": {"SRmaster": "true", "location": "/srv/a&b<c>"},
     "vdi_sm_config": {}, "vdi_type": "user"},
    {"command": "vdi_snapshot", "args": [], "device_config": {"SRmaster": "true"},
     "driver_params": {"epochhint": "x", "mirror": "nbd:dp"}, "subtask_of": "DummyRef:|a|b"},
]


@pytest.mark.parametrize("params", PARAMS, ids=[p["command"] for p in PARAMS])
@pytest.mark.parametrize("writer", ["xmlrpc.client", "xmlrpc.client-pretty", "xapi"])
def test_decode_request_matches_xmlrpc_client(params, writer):
    if writer == "xapi":
        from simulator import sm_exec
        doc = sm_exec.encode_call(params["command"], params)
    else:
        doc = xmlrpc.client.dumps((params,), params["command"])
        if writer.endswith("pretty"):
            import xml.dom.minidom
            doc = xml.dom.minidom.parseString(doc).toprettyxml(indent="    ")
    request = wire.decode_request(["Driver", doc])
    (expected,), method = xmlrpc.client.loads(doc)
    assert request.command == method == params["command"]
    assert request.params == expected == params


def test_decode_typed_scalars():
    doc = xmlrpc.client.dumps(({"command": "x", "n": 5, "b": True, "f": 1.5, "s": "t",
                                "none": None},), "x", allow_none=True)
    assert wire.decode_request(["D", doc]).params == {
        "command": "x", "n": 5, "b": True, "f": 1.5, "s": "t", "none": None}


def test_encode_call_round_trips():
    params = {"command": "vdi_attach_from_config", "device_config": {"location": "/x"},
              "sr_uuid": "s", "vdi_uuid": "v"}
    doc = wire.encode_call("vdi_attach_from_config", [params])
    (decoded,), method = xmlrpc.client.loads(doc)
    assert method == "vdi_attach_from_config" and decoded == params
    assert wire.decode_request(["D", doc]).params == params


@pytest.mark.parametrize("argv", [["D"], ["D", "<methodCall/>", "x"]])
def test_argv_count(argv):
    with pytest.raises(SRError) as e:
        wire.decode_request(argv)
    assert e.value.code == 143


@pytest.mark.parametrize("doc", [
    "", "x", "<methodCall>", "<methodResponse/>",
    xmlrpc.client.dumps(("a", "b"), "m"), xmlrpc.client.dumps(("a",), "m"),
    xmlrpc.client.dumps(({"command": "other"},), "m"),
    xmlrpc.client.dumps(({"args": ["a", 1]},), "m"),
    xmlrpc.client.dumps(({"device_config": "x"},), "m"),
    xmlrpc.client.dumps(({"driver_params": []},), "m"),
    "<methodCall><methodName>m</methodName><params><param><value><boolean>2</boolean>"
    "</value></param></params></methodCall>",
])
def test_bad_requests_are_143(doc):
    with pytest.raises(SRError) as e:
        wire.decode_request(["D", doc])
    assert e.value.code == 143


@pytest.mark.parametrize("text", ["\ufffe", "\x01", "&#1;", "&#xFFFF;", "&#55296;"])
def test_xml_illegal_characters_are_447(text):
    doc = ("<methodCall><methodName>vdi_create</methodName><params><param><value><struct>"
           "<member><name>args</name><value><array><data><value>1</value><value>%s</value>"
           "</data></array></value></member></struct></value></param></params></methodCall>"
           % text)
    with pytest.raises(SRError) as e:
        wire.decode_request(["D", doc])
    assert e.value.code == 447


def test_is_xml_char():
    assert all(wire.is_xml_char(c) for c in "\t\n\r a\u00e9\ud7ff\ue000\ufffd\U00010000")
    assert not any(wire.is_xml_char(c) for c in "\x00\x01\x1f\ud800\udfff\ufffe\uffff")
