"""The request encoder reproduces smapiv1.md §2.6 byte for byte."""
import os
import xmlrpc.client

from simulator import sm_exec

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "requests")
HOST = "OpaqueRef:6f1c2a9e-3b0d-4c57-9e8e-1d2f3a4b5c6d"
SESSION = "OpaqueRef:0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
SR = "OpaqueRef:9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
SR_UUID = "3f6e2b1a-7c4d-4e5f-9a8b-0c1d2e3f4a5b"
VDI = "OpaqueRef:2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901"
VDI_UUID = "d1e2f3a4-b5c6-4d7e-8f90-a1b2c3d4e5f6"
ZFS = {"SRmaster": "true", "location": "/mnt/zfs/zfssr"}


def fixture(name):
    with open(os.path.join(FIXTURES, name + ".xml")) as f:
        return f.read()


def encode(command, **keys):
    return sm_exec.encode_call(command, sm_exec.build_request(command, **keys))


def test_vdi_create():
    doc = encode("vdi_create", host_ref=HOST, session_ref=SESSION, sr_ref=SR, sr_uuid=SR_UUID,
                 device_config=ZFS, vdi_type="user", vdi_sm_config={},
                 args=[10737418240, "data disk", "", "", "false", "19700101T00:00:00Z", "",
                       "false"],
                 subtask_of="DummyRef:|5c0e1f2a-3b4c-4d5e-8f6a-7b8c9d0e1f2a|VDI.create")
    assert doc == fixture("vdi_create")


def test_vdi_snapshot():
    # keys given in a scrambled order: the encoder must impose xapi's order
    doc = encode("vdi_snapshot", vdi_allow_caching="false", vdi_on_boot="persist",
                 driver_params={"epochhint": "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"},
                 subtask_of="DummyRef:|8e9f0a1b-2c3d-4e5f-a6b7-c8d9e0f1a2b3|VDI.snapshot",
                 vdi_uuid=VDI_UUID, vdi_location=VDI_UUID, vdi_ref=VDI, sr_uuid=SR_UUID,
                 sr_ref=SR, session_ref=SESSION, device_config=ZFS, host_ref=HOST)
    assert doc == fixture("vdi_snapshot")


def test_sr_probe():
    doc = encode("sr_probe", host_ref=HOST, session_ref=SESSION, sr_sm_config={},
                 device_config={"SRmaster": "true", "server": "192.168.1.11:/glustervolume"},
                 subtask_of="DummyRef:|1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d|SR.probe")
    assert doc == fixture("sr_probe")


def test_vdi_attach():
    doc = encode("vdi_attach", host_ref=HOST, session_ref=SESSION, sr_ref=SR, sr_uuid=SR_UUID,
                 vdi_ref=VDI, vdi_location=VDI_UUID, vdi_uuid=VDI_UUID, args=[True and "true"],
                 device_config={"SRmaster": "false", "server": "192.168.1.11:/glustervolume",
                                "backupservers": "192.168.1.12:192.168.1.13"},
                 subtask_of="DummyRef:|4d5e6f7a-8b9c-4d0e-9f1a-2b3c4d5e6f7a|VDI.attach2",
                 vdi_on_boot="persist", vdi_allow_caching="false")
    assert doc == fixture("vdi_attach")


def test_fixtures_decode():
    for name in ("vdi_create", "vdi_snapshot", "sr_probe", "vdi_attach"):
        (req,), method = xmlrpc.client.loads(fixture(name))
        assert method == name == req["command"]
        assert all(isinstance(a, str) for a in req["args"])


def test_escaping_and_empties():
    assert sm_exec.encode_value("a<b&c>") == "<value>a&lt;b&amp;c&gt;</value>"
    assert sm_exec.encode_value("") == "<value/>"
    assert sm_exec.encode_value({}) == "<value><struct/></value>"
    assert sm_exec.encode_value([]) == "<value><array><data/></array></value>"
    (req,), _ = xmlrpc.client.loads(encode("x", args=["a<b&c>", ""], device_config={}))
    assert req["args"] == ["a<b&c>", ""]
