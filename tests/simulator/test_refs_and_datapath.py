"""Issue 11 items 10 and 11: the simulator validates refs as xapi does (a malformed or
dangling ref is never stored, so scans keep working), and keeps no datapath record of
a plug whose activation failed."""
import uuid

import pytest
import XenAPI

from simulator.errors import XapiError
from test_xapi_server import api, fail_code, introduce_args  # noqa: F401 (fixture)


@pytest.mark.parametrize("bad", ["garbage", "OpaqueRef:" + "0" * 8 + "-dead-beef", 7])
def test_db_introduce_refuses_a_bad_snapshot_of(pool, sr, api, bad):  # noqa: F811
    x = api(pool.session_create(sr))
    args = introduce_args(sr, "loc-%s" % uuid.uuid4())
    args[15], args[17] = True, bad  # is_a_snapshot, snapshot_of
    assert fail_code(x.VDI.db_introduce, *args)[0] == "HANDLE_INVALID"
    assert pool.sr_record(sr)["VDIs"] == []


def test_set_snapshot_of_refuses_a_bad_ref_and_takes_a_good_one(pool, sr, api):  # noqa: F811
    x = api(pool.session_create(sr))
    a = x.VDI.db_introduce(*introduce_args(sr, "a"))
    b = x.VDI.db_introduce(*introduce_args(sr, "b"))
    assert fail_code(x.VDI.set_snapshot_of, b, "not-a-ref")[0] == "HANDLE_INVALID"
    assert fail_code(x.VDI.set_snapshot_of, b, a.replace("-", "0", 1))[0] == "HANDLE_INVALID"
    x.VDI.set_snapshot_of(b, a)
    assert x.VDI.get_snapshot_of(b) == a
    x.VDI.set_snapshot_of(b, "OpaqueRef:NULL")


def test_a_malformed_vdi_ref_is_not_stored_and_scan_keeps_working(tmp_path):
    from simulator import Pool
    (tmp_path / "data").mkdir()
    with Pool(tmp_path / "local") as pool:
        sr = pool.sr_create("local", {"location": str(tmp_path / "data")})
        vdi = pool.vdi_create(sr, 1 << 20, name_label="disk")
        with pytest.raises(XapiError):
            pool.call("vdi_snapshot", vdi=vdi, vdi_ref="garbage")
        assert pool.sr_record(sr)["VDIs"] == [vdi]
        pool.sr_scan(sr)
        pool.sr_scan(sr)
        assert pool.sr_record(sr)["VDIs"] == [vdi]
        assert (tmp_path / "data" / pool.sr_record(sr)["uuid"]).exists()
        pool.vdi_destroy(vdi)


def test_failed_activation_leaves_no_datapath(pool, tmp_path):
    sr = pool.sr_create("fake", {"location": str(tmp_path / "d"), "fail": "vdi_activate"})
    vdi = pool.vdi_create(sr, 1024)
    with pytest.raises(XapiError):
        pool.vdi_attach(vdi)
    assert pool.find("datapath", VDI=vdi) == []
    assert [c.command for c in pool.calls[-3:]] == ["vdi_attach", "vdi_activate", "vdi_detach"]
    pool.vdi_destroy(vdi)  # not refused as in use
