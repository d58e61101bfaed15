"""The XenAPI server, driven by the PyPI XenAPI client the framework uses."""
import socket
import uuid

import pytest
import XenAPI

from simulator.xapi_api import parse_where


class _UDS(XenAPI.UDSTransport):
    """Like the framework's transport: connect to the socket named by the simulator."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def make_connection(self, host):
        conn = super().make_connection(host)
        path = self.path

        def connect():
            conn.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            conn.sock.connect(path)
        conn.connect = connect
        return conn


@pytest.fixture
def api(pool, sr):
    with pool.server.running() as path:
        def connect(session_ref):
            s = XenAPI.Session("http://_var_lib_xcp_xapi/", transport=_UDS(path))
            s._session = session_ref
            return s.xenapi
        yield connect


def introduce_args(sr, location, uid=None):
    return [uid or str(uuid.uuid4()), "label", "", sr, "user", False, False, {}, location, {},
            {}, True, "1024", "0", "", False, "19700101T00:00:00Z", "", False]


def fail_code(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def test_sm_session_may_introduce_and_set(pool, sr, api):
    x = api(pool.session_create(sr))
    ref = x.VDI.db_introduce(*introduce_args(sr, "loc1"))
    x.VDI.set_virtual_size(ref, "4096")
    x.VDI.add_to_sm_config(ref, "k", "v")
    x.SR.set_physical_size(sr, "100")
    rec = x.VDI.get_record(ref)
    assert rec["virtual_size"] == "4096" and rec["sm_config"] == {"k": "v"}
    assert x.SR.get_physical_size(sr) == "100"
    assert list(x.VDI.get_all_records_where('field "SR" = "%s"' % sr)) == [ref]
    assert x.VDI.get_by_uuid(rec["uuid"]) == ref
    x.VDI.db_forget(ref)
    assert fail_code(x.VDI.get_record, ref)[0] == "HANDLE_INVALID"


def test_permission_denied_without_sm_session(pool, sr, api):
    other_sr = pool.sr_introduce(str(uuid.uuid4()), "fake")
    for session in (pool.session_create(None), pool.session_create(other_sr)):
        x = api(session)
        assert fail_code(x.VDI.db_introduce, *introduce_args(sr, "l"))[0] == "PERMISSION_DENIED"
        assert fail_code(x.SR.set_virtual_allocation, sr, "1")[0] == "PERMISSION_DENIED"
        pbd = pool.records("PBD")[0]["uuid"]
        assert fail_code(x.PBD.set_device_config, pool.by_uuid("PBD", pbd),
                         {})[0] == "PERMISSION_DENIED"
        # unrestricted calls still work
        assert x.SR.get_uuid(sr) == pool.sr_record(sr)["uuid"]


def test_login_session_cannot_write(pool, sr, api):
    with pool.server.running() as path:
        s = XenAPI.Session("http://_var_lib_xcp_xapi/", transport=_UDS(path))
        s.login_with_password("root", "", "", "SM")
        assert fail_code(s.xenapi.SR.set_physical_size, sr, "1")[0] == "PERMISSION_DENIED"
        assert s.xenapi.pool.get_master(s.xenapi.pool.get_all()[0]) == pool.master
        s.xenapi.session.logout()


def test_location_not_unique_and_uuid_invalid(pool, sr, api):
    x = api(pool.session_create(sr))
    uid = str(uuid.uuid4())
    x.VDI.db_introduce(*introduce_args(sr, "same", uid))
    assert fail_code(x.VDI.db_introduce, *introduce_args(sr, "same"))[0] == "LOCATION_NOT_UNIQUE"
    assert fail_code(x.VDI.db_introduce, *introduce_args(sr, "other", uid))[0] == "UUID_INVALID"
    assert fail_code(x.VDI.db_introduce,
                     *introduce_args(sr, "x", "not-a-uuid"))[0] == "UUID_INVALID"
    assert fail_code(x.VDI.get_by_uuid, str(uuid.uuid4()))[0] == "UUID_INVALID"


def test_errors(pool, sr, api):
    assert fail_code(api(pool.session_create(sr)).VDI.frobnicate, "x")[0] == \
        "MESSAGE_METHOD_UNKNOWN"
    assert fail_code(api(pool.session_create(sr)).SR.get_record, "OpaqueRef:nope") == \
        ["HANDLE_INVALID", "SR", "OpaqueRef:nope"]
    # an invalid session: the XenAPI client turns SESSION_INVALID into a re-login attempt
    with pytest.raises(Exception, match="log in"):
        api("OpaqueRef:bogus").SR.get_all()


def test_secrets_and_messages(pool, sr, api):
    uid = pool.secret_create("s3cret")
    x = api(pool.session_create(None))
    assert x.secret.get_value(x.secret.get_by_uuid(uid)) == "s3cret"
    ref = x.secret.create({"value": "other"})
    assert x.secret.get_value(ref) == "other"
    x.message.create("POST_ATTACH_SCAN_FAILED", "2", "SR", pool.sr_record(sr)["uuid"], "body")
    assert pool.records("message")[0]["name"] == "POST_ATTACH_SCAN_FAILED"
    host = pool.hosts[1]
    assert x.host.get_by_uuid(x.host.get_uuid(host)) == host
    assert x.SM.get_all_records_where('field "type" = "fake"')


def test_where_expressions():
    rec = {"SR": "OpaqueRef:a", "managed": True, "type": "user"}
    assert parse_where('field "SR" = "OpaqueRef:a"')(rec)
    assert parse_where('field "SR" = "OpaqueRef:a" and field "managed" = "true"')(rec)
    assert not parse_where('not (field "type" = "user" or false)')(rec)
    assert parse_where('field "type" <> "system"')(rec)
