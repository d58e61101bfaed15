"""The simulator as a xapi for XenAPI clients: a real ``XenAPI.Session`` over HTTP
drives the storage flows (against a file-backed fake driver with CBT), the checks
xapi makes before it calls the driver, and ``VDI.get_nbd_info`` served by qemu-nbd."""
import base64
import os
import shutil

import pytest
import XenAPI

from fake_drivers import FAKE_CBT_DRIVER, write_driver
from simulator.nbd_client import NbdClient, NbdError

MiB = 1 << 20

# the NBD exports are qemu-nbd's (Debian qemu-utils, installed by tests/rigs/export.sh)
needs_qemu_nbd = pytest.mark.skipif(shutil.which("qemu-nbd") is None,
                                    reason="qemu-nbd missing: tests/rigs/export.sh install")


@pytest.fixture
def cbt_pool(tmp_path, sm_dir):
    from simulator import Pool
    write_driver(sm_dir, "FakeCbt", FAKE_CBT_DRIVER)
    with Pool(tmp_path / "pool", sm_dir=str(sm_dir)) as p:
        p.nbd.accept_window = 5
        yield p


@pytest.fixture
def cbt_sr(cbt_pool, tmp_path):
    return cbt_pool.sr_create("fakecbt", {"location": str(tmp_path / "cbt")}, name_label="c")


@pytest.fixture
def session(cbt_pool):
    port = cbt_pool.server.listen_tcp(0)
    session = XenAPI.Session("http://127.0.0.1:%d/" % port)
    session.xenapi.login_with_password("root", "", "1.0", "srkit-test")
    yield session
    session.xenapi.session.logout()
    cbt_pool.server.stop_tcp()


@pytest.fixture
def x(session):
    return session.xenapi


def details(fn, *args):
    with pytest.raises(XenAPI.Failure) as e:
        fn(*args)
    return e.value.details


def write(pool, vdi, offset, data):
    with open(pool.vdi_attach(vdi)["params"], "r+b") as f:
        f.seek(offset)
        f.write(data)
    pool.vdi_detach(vdi)


def bits(b64):
    raw = base64.b64decode(b64)
    return [i for i in range(len(raw) * 8) if raw[i // 8] & (0x80 >> (i % 8))]


def test_records_and_flows_over_http(cbt_pool, cbt_sr, x):
    vdi = cbt_pool.vdi_create(cbt_sr, 4 * MiB, name_label="disk")
    uuid = cbt_pool.vdi_record(vdi)["uuid"]
    assert x.VDI.get_by_uuid(uuid) == vdi
    assert x.VDI.get_record(vdi)["cbt_enabled"] is False
    assert vdi in x.VDI.get_all_records()
    assert cbt_sr in x.SR.get_all_records()
    x.VDI.enable_cbt(vdi)
    assert x.VDI.get_cbt_enabled(vdi) is True
    assert cbt_pool.last_call.command == "vdi_enable_cbt"
    snap = x.VDI.snapshot(vdi, {})
    rec = x.VDI.get_record(snap)
    assert rec["is_a_snapshot"] and rec["snapshot_of"] == vdi and rec["cbt_enabled"]
    clone = x.VDI.clone(snap, {})
    assert x.VDI.get_is_a_snapshot(clone) is False
    x.VDI.resize(vdi, str(8 * MiB))
    assert x.VDI.get_virtual_size(vdi) == str(8 * MiB)
    x.VDI.destroy(clone)
    assert details(x.VDI.get_record, clone)[0] == "HANDLE_INVALID"
    x.SR.scan(cbt_sr)
    assert cbt_pool.last_call.command == "sr_scan"
    x.VDI.disable_cbt(vdi)
    assert x.VDI.get_cbt_enabled(vdi) is False


def test_cbt_delta_bitmap_and_data_destroy(cbt_pool, cbt_sr, x, tmp_path):
    vdi = cbt_pool.vdi_create(cbt_sr, 2 * MiB)
    x.VDI.enable_cbt(vdi)
    s1 = x.VDI.snapshot(vdi, {})
    write(cbt_pool, vdi, 64 * 1024 + 10, b"x")           # block 1
    write(cbt_pool, vdi, 5 * 64 * 1024 - 1, b"yz")      # blocks 4 and 5
    s2 = x.VDI.snapshot(vdi, {})
    x.VDI.data_destroy(s1)
    assert x.VDI.get_type(s1) == "cbt_metadata"
    assert not (tmp_path / "cbt" / (x.VDI.get_uuid(s1) + ".img")).exists()
    assert bits(x.VDI.list_changed_blocks(s1, s2)) == [1, 4, 5]
    # a cbt_metadata VDI: no snapshot, clone, resize, NBD or dom0 attach (xapi's faults)
    for fn, args in ((x.VDI.snapshot, (s1, {})), (x.VDI.clone, (s1, {})),
                     (x.VDI.resize, (s1, str(4 * MiB))), (x.VDI.get_nbd_info, (s1,))):
        assert details(fn, *args) == ["VDI_INCOMPATIBLE_TYPE", s1, "cbt_metadata"]
    with pytest.raises(Exception) as e:
        cbt_pool.vdi_attach(s1, writable=False)
    assert e.value.description == ["VDI_INCOMPATIBLE_TYPE", s1, "cbt_metadata"]
    assert cbt_pool.records("datapath") == []
    x.VDI.destroy(s1)  # destroy stays allowed


def test_xapi_checks_before_the_driver(cbt_pool, cbt_sr, x, tmp_path):
    vdi = cbt_pool.vdi_create(cbt_sr, MiB)
    snap = x.VDI.snapshot(vdi, {})
    calls = len(cbt_pool.calls)
    assert details(x.VDI.enable_cbt, snap) == ["OPERATION_NOT_ALLOWED",
                                               "VDI is a snapshot: " + snap]
    assert details(x.VDI.data_destroy, vdi) == ["OPERATION_NOT_ALLOWED",
                                                "VDI is not a snapshot: " + vdi]
    assert details(x.VDI.data_destroy, snap) == ["VDI_NO_CBT_METADATA", snap]
    assert len(cbt_pool.calls) == calls  # none reached the driver
    # an SR whose driver lacks VDI_CONFIG_CBT ("fake"): SR_OPERATION_NOT_SUPPORTED
    sr = cbt_pool.sr_create("fake", {"location": str(tmp_path / "plain")})
    plain = cbt_pool.vdi_create(sr, MiB)
    assert details(x.VDI.enable_cbt, plain) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    # VDIs of two SRs: the exception xapi does not translate
    assert details(x.VDI.list_changed_blocks, plain, vdi)[0] == "INTERNAL_ERROR"
    assert [c.command for c in cbt_pool.calls[calls:]] == ["sr_create", "sr_attach",
                                                          "vdi_create"]
    # enabling twice does not call the driver again
    x.VDI.enable_cbt(vdi)
    calls = len(cbt_pool.calls)
    x.VDI.enable_cbt(vdi)
    assert len(cbt_pool.calls) == calls
    # the driver's own fault travels unchanged: CBT off on the older VDI
    assert details(x.VDI.list_changed_blocks, snap, vdi)[0] == "SR_BACKEND_FAILURE_460"


@needs_qemu_nbd
def test_nbd_export_reads_the_vdi_and_goes_away(cbt_pool, cbt_sr, session, x):
    cbt_pool.nbd.accept_window = 600  # only the client's disconnect may end it here
    vdi = cbt_pool.vdi_create(cbt_sr, 3 * MiB)
    data = os.urandom(3 * MiB)
    write(cbt_pool, vdi, 0, data)
    uuid = cbt_pool.vdi_record(vdi)["uuid"]
    [info] = x.VDI.get_nbd_info(vdi)
    assert set(info) == {"address", "port", "exportname", "cert", "subject"}
    assert info["address"] == "127.0.0.1"
    assert info["exportname"] == "/%s?session_id=%s" % (uuid, session._session)
    assert x.VDI.get_nbd_info(vdi) == [info]  # one export per VDI
    assert len(cbt_pool.records("datapath")) == 1
    with NbdClient(info["address"], info["port"], info["exportname"]) as c:
        assert c.size == 3 * MiB and c.read_only
        assert c.read(0, 3 * MiB) == data
        # a wrong name is refused; asked while a client holds the export, since one that
        # came and went before any other connected may end it (on a busy machine it did)
        with pytest.raises(NbdError):
            NbdClient(info["address"], info["port"], "/other")
        with NbdClient(info["address"], info["port"], info["exportname"], use_go=False) as c2:
            assert c2.read(MiB - 7, 100) == data[MiB - 7:MiB + 93]
    cbt_pool.nbd.wait_closed(vdi, timeout=60)
    assert cbt_pool.nbd.active() == {}
    assert cbt_pool.records("datapath") == []


def test_no_nbd_info_where_the_sr_is_unplugged(cbt_pool, cbt_sr, x):
    vdi = cbt_pool.vdi_create(cbt_sr, MiB)
    cbt_pool.pbd_unplug(cbt_pool.sr_record(cbt_sr)["PBDs"][0])
    assert x.VDI.get_nbd_info(vdi) == []
    assert cbt_pool.records("datapath") == []


@needs_qemu_nbd
def test_nbd_export_without_client_stops_after_accept_window(cbt_pool, cbt_sr, x):
    cbt_pool.nbd.accept_window = 0.5
    vdi = cbt_pool.vdi_create(cbt_sr, MiB)
    x.VDI.get_nbd_info(vdi)
    cbt_pool.nbd.wait_closed(vdi, timeout=30)
    assert cbt_pool.records("datapath") == []


@needs_qemu_nbd
def test_destroy_ends_the_export(cbt_pool, cbt_sr, x):
    vdi = cbt_pool.vdi_create(cbt_sr, MiB)
    [info] = x.VDI.get_nbd_info(vdi)
    c = NbdClient(info["address"], info["port"], info["exportname"])
    x.VDI.destroy(vdi)
    assert cbt_pool.nbd.active() == {} and cbt_pool.records("datapath") == []
    with pytest.raises((NbdError, OSError)):
        c.read(0, 4096)
    c.sock.close()


@needs_qemu_nbd
def test_a_new_export_right_after_the_last_client_left(cbt_pool, cbt_sr, x):
    """The ending export unplugs first; the new one keeps its own plug."""
    cbt_pool.nbd.accept_window = 600
    vdi = cbt_pool.vdi_create(cbt_sr, MiB)
    [info] = x.VDI.get_nbd_info(vdi)
    with NbdClient(info["address"], info["port"], info["exportname"]) as c:
        c.read(0, 4096)
    [again] = x.VDI.get_nbd_info(vdi)
    assert len(cbt_pool.records("datapath")) == 1
    with NbdClient(again["address"], again["port"], again["exportname"]) as c:
        assert c.read(0, MiB) == bytes(MiB)
    cbt_pool.nbd.wait_closed(vdi, timeout=60)
    assert cbt_pool.records("datapath") == [] and cbt_pool.nbd.active() == {}
