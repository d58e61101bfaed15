"""The four request documents of smapiv1.md §2.6, byte for byte and pretty-printed,
decoded by the framework and served by sm_drivers/LocalSR."""
import os
import re
import xml.dom.minidom
import xmlrpc.client

import pytest

from protocol_rig import MiB, fixture_document
from framework import wire
from simulator import sm_exec

NAMES = ("vdi_create", "vdi_snapshot", "sr_probe", "vdi_attach")

# the fictitious values of the fixtures (§2.6)
HOST = "OpaqueRef:6f1c2a9e-3b0d-4c57-9e8e-1d2f3a4b5c6d"
SESSION = "OpaqueRef:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SR_REF = "OpaqueRef:9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
SR_UUID = "3f6e2b1a-7c4d-4e5f-9a8b-0c1d2e3f4a5b"
VDI_REF = "OpaqueRef:2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"
VDI_UUID = "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6"
ZFS_DC = "<member><name>location</name><value>/mnt/zfs/zfssr</value></member>"
GLUSTER_DC = "<member><name>server</name><value>192.168.1.11:/glustervolume</value></member>"


def pretty(document):
    return xml.dom.minidom.parseString(document).toprettyxml(indent="  ")


def typed(document):
    """The same call as Python's xmlrpc.client writes it (<string> tags, prologue)."""
    params, method = xmlrpc.client.loads(document)
    return xmlrpc.client.dumps(params, method)


VARIANTS = {"verbatim": lambda d: d, "pretty": pretty, "typed": typed}


def adapt(document, local, vdi=None):
    """Point a fixture at the real SR (and VDI) of ``local``; structure unchanged."""
    dc = "<member><name>location</name><value>%s</value></member>" % local.location
    out = (document.replace(HOST, local.pool.master)
           .replace(SESSION, local.pool.session_create(local.sr))
           .replace(SR_REF, local.sr).replace(SR_UUID, local.sr_uuid)
           .replace(ZFS_DC, dc).replace(GLUSTER_DC, dc))
    if vdi is not None:
        rec = local.pool.vdi_record(vdi)
        out = out.replace(VDI_REF, vdi).replace(VDI_UUID, rec["uuid"])
    return out


# --- the documents themselves -------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_fixture_is_xapi_wire_form(name):
    doc = fixture_document(name)
    assert doc.startswith("<methodCall><methodName>%s</methodName>" % name)
    assert "<?xml" not in doc and "\n" not in doc and not re.search(r">\s+<", doc)
    assert "<string>" not in doc, "xapi writes strings without <string>"
    (params,), method = xmlrpc.client.loads(doc)
    assert method == name and params["command"] == name
    # re-encoding with the simulator's xapi encoder gives the very same bytes
    assert sm_exec.encode_call(name, params) == doc


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", NAMES)
def test_framework_decodes_like_xmlrpc_client(name, variant):
    doc = VARIANTS[variant](fixture_document(name))
    (expected,), method = xmlrpc.client.loads(doc)
    request = wire.decode_request(["LocalSR", doc])
    assert request.command == method == name
    assert request.params == expected
    assert all(isinstance(a, str) for a in request.args)


def test_empty_forms_decode_to_empty_values():
    request = wire.decode_request(["x", fixture_document("vdi_create")])
    assert request.args[2] == "" and request.args[3] == ""      # <value/>
    assert request.params["vdi_sm_config"] == {}               # <struct/>
    snap = wire.decode_request(["x", fixture_document("vdi_snapshot")])
    assert snap.args == []                                       # <array><data/></array>
    assert snap.params["driver_params"] == {"epochhint": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"}


# --- served verbatim: decoded, then refused for the right reason -----------------------------

EXPECTED_VERBATIM = {
    # the fixtures name a ZFS/GlusterFS host that is not this one
    "vdi_create": (47, "/mnt/zfs/zfssr"),      # SRUnavailable: no SR at that location
    "vdi_snapshot": (144, VDI_UUID),            # VDIMissing
    "sr_probe": (115, "location"),             # ConfigParamsMissing: Gluster has `server`
    "vdi_attach": (115, "location"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("name", NAMES)
def test_driver_serves_fixture_verbatim(local, name, variant):
    before = local.listing()
    value, fault = local.raw(VARIANTS[variant](fixture_document(name)))
    code, needle = EXPECTED_VERBATIM[name]
    assert fault is not None and fault[0] == code, (value, fault)
    assert needle in fault[1]
    assert local.listing() == before


# --- served against a real SR: they do their job ------------------------------------------------

@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_vdi_create_document_creates_the_vdi(local, variant):
    before = set(local.vdi_uuids())
    value, fault = local.raw(VARIANTS[variant](adapt(fixture_document("vdi_create"), local)))
    assert fault is None, fault
    assert set(value) == {"uuid", "location"}
    assert set(local.vdi_uuids()) - before == {value["uuid"]}
    rec = local.pool.vdi_record(local.pool.by_uuid("VDI", value["uuid"]))
    assert rec["name_label"] == "data disk"
    assert rec["virtual_size"] == "10737418240"
    assert rec["type"] == "user"
    raw = os.path.join(local.sr_dir, value["location"] + ".raw")
    assert os.path.getsize(raw) == 10737418240
    assert os.stat(raw).st_blocks == 0, "a new VDI must be sparse"
    local.pool.vdi_destroy(local.pool.by_uuid("VDI", value["uuid"]))


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_vdi_snapshot_document_snapshots(local, variant):
    vdi = local.pool.vdi_create(local.sr, MiB, name_label="to snap")
    value, fault = local.raw(VARIANTS[variant](
        adapt(fixture_document("vdi_snapshot"), local, vdi)))
    assert fault is None, fault
    snap = local.pool.by_uuid("VDI", value["uuid"])
    rec = local.pool.vdi_record(snap)
    assert rec["is_a_snapshot"] is True and rec["snapshot_of"] == vdi
    assert rec["read_only"] is True
    assert os.path.exists(os.path.join(local.sr_dir, value["location"] + ".raw"))
    local.pool.vdi_destroy(snap)
    local.pool.vdi_destroy(vdi)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_sr_probe_document_finds_the_sr(local, variant):
    value, fault = local.raw(VARIANTS[variant](adapt(fixture_document("sr_probe"), local)))
    assert fault is None, fault
    assert isinstance(value, str)
    doc = xml.dom.minidom.parseString(value)
    uuids = [n.firstChild.data.strip() for n in doc.getElementsByTagName("UUID")]
    assert uuids == [local.sr_uuid]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_vdi_attach_document_attaches(local, variant):
    """SRmaster=false and an unknown extra key (backupservers) are fine for attach."""
    vdi = local.pool.vdi_create(local.sr, MiB)
    value, fault = local.raw(VARIANTS[variant](
        adapt(fixture_document("vdi_attach"), local, vdi)))
    assert fault is None, fault
    assert value["params"].startswith("/dev/") and os.path.exists(value["params"])
    assert value["params_nbd"] == ""
    local.pool.call("vdi_detach", vdi=vdi)
    local.pool.vdi_destroy(vdi)
