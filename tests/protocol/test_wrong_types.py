"""Issue 11 item 5: every typed request field is checked in one place. A value of the
wrong XML-RPC type (an int, an array, a struct... where xapi sends a string) is
BadRequest (143), never a generic 1200 with a traceback, and changes nothing."""
import pytest

from framework.wire import FIELDS, STRING, STRINGS, STRING_MAP
from protocol_rig import MiB, checked

PLACEHOLDER = "@@wrong@@"
WRONG = {
    "int": "<value><int>7</int></value>",
    "boolean": "<value><boolean>1</boolean></value>",
    "double": "<value><double>1.5</double></value>",
    "nil": "<value><nil/></value>",
    "array": "<value><array><data><value>x</value></data></array></value>",
    "struct": "<value><struct><member><name>a</name><value>b</value></member></struct></value>",
    "string": "<value>text</value>",
}
FITS = {STRING: "string", STRINGS: "array", STRING_MAP: "struct"}
COMMANDS = ("vdi_create", "vdi_snapshot", "vdi_attach", "sr_scan")


def cases():
    for key, kind in sorted(FIELDS.items()):
        for wrong in sorted(WRONG):
            if wrong != FITS[kind] and not (kind == STRING_MAP and wrong == "struct"):
                yield key, wrong
    # inside the containers: an element of args, a device_config value
    for wrong in sorted(WRONG):
        if wrong != "string":
            yield "args[]", wrong
            yield "device_config.location", wrong


CASES = list(cases())


def document(local, vdi, key, wrong):
    extra = {}
    if key == "args[]":
        doc = local.document("vdi_resize", [PLACEHOLDER], vdi=vdi)
    elif key == "device_config.location":
        doc = local.document("vdi_attach", ["true"], vdi=vdi, device_config={
            "SRmaster": "true", "location": PLACEHOLDER})
    else:
        extra[key] = PLACEHOLDER
        if key == "args":
            doc = local.document("vdi_attach", [], vdi=vdi)
            doc = doc.replace("<name>args</name><value><array><data/></array></value>",
                              "<name>args</name><value>%s</value>" % PLACEHOLDER)
        elif key == "command":
            # the methodName must agree, so only the struct member is replaced
            doc = local.document("vdi_attach", ["true"], vdi=vdi)
            doc = doc.replace("<name>command</name><value>vdi_attach</value>",
                              "<name>command</name><value>%s</value>" % PLACEHOLDER)
        else:
            doc = local.document("vdi_resize", [str(4 * MiB)], vdi=vdi, **extra)
    assert "<value>%s</value>" % PLACEHOLDER in doc, key
    return doc.replace("<value>%s</value>" % PLACEHOLDER, WRONG[wrong])


@pytest.fixture(scope="module")
def vdi(local):
    ref = local.pool.vdi_create(local.sr, 2 * MiB)
    yield ref
    local.pool.vdi_destroy(ref)


def test_there_are_enough_cases():
    assert len(CASES) >= 76


@pytest.mark.parametrize("key,wrong", CASES, ids=["%s-%s" % c for c in CASES])
def test_wrong_type_is_143(local, vdi, key, wrong):
    files = local.listing()
    log_before = len(local.smlog)
    value, fault = local.raw(document(local, vdi, key, wrong))
    assert fault is not None and fault[0] == 143, (value, fault)
    assert key.split("[")[0].split(".")[0] in fault[1]
    assert "Traceback" not in local.smlog[log_before:]
    assert local.listing() == files
    assert local.pool.vdi_record(vdi)["virtual_size"] == str(2 * MiB)
