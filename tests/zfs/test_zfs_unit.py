"""zfsvol without ZFS: argv building, -Hp parsing, send-stream parsing, repair plans and
option checks, against a fake runner that records every command (host only)."""
import io
import struct

import pytest

from drivers.zfs import cli, layout as L, options as O, repair, stream
from drivers.zfs.process import ZfsError
from framework import meta as m
from framework.errors import SRError

SR = "tank/11111111-2222-4333-8444-555555555555"
A = "aaaaaaaa-0000-4000-8000-000000000001"
S = "bbbbbbbb-0000-4000-8000-000000000002"


class FakeRunner(object):
    """Answers commands from a table of (argv prefix -> stdout or ZfsError)."""

    def __init__(self, answers=()):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, argv, timeout=None):
        self.calls.append(list(argv))
        for prefix, answer in self.answers:
            if list(argv[:len(prefix)]) == list(prefix):
                if isinstance(answer, Exception):
                    raise answer
                return answer
        return ""


def row(name, kind="volume", volsize=1 << 20, clones="-", meta="-", origin="-"):
    return "\t".join([name, kind, str(volsize), "4096", "4096", "0", origin, clones, meta])


def test_create_volume_argv_thin_and_thick():
    r = FakeRunner()
    z = cli.Cli(r)
    z.create_volume(SR + "/" + A, 1 << 20, {"volblocksize": 16384, L.META_PROP: "{}"}, True)
    z.create_volume(SR + "/" + A, 1 << 20, {"volblocksize": 16384}, False)
    assert r.calls[0] == ["zfs", "create", "-s", "-V", "1048576", "-o", "srkit:meta={}",
                          "-o", "volblocksize=16384", SR + "/" + A]
    assert r.calls[1] == ["zfs", "create", "-V", "1048576", "-o", "volblocksize=16384",
                          SR + "/" + A]


def test_listing_is_one_parsable_command():
    out = "\n".join([row(SR, "filesystem", 0), row(SR + "/" + A),
                     row(SR + "/" + A + "@" + S, "snapshot", clones=SR + "/x")])
    r = FakeRunner([(["zfs", "list"], out + "\n")])
    rows = cli.Cli(r).list_tree(SR)
    assert r.calls == [["zfs", "list", "-t", "all", "-r", "-Hp", "-s", "createtxg", "-o",
                        ",".join(L.LIST_PROPS), SR]]
    assert [x.vdi_uuid() for x in rows] == [None, A, S]
    assert rows[2].clones == [SR + "/x"] and rows[2].dataset == SR + "/" + A
    assert rows[1].volsize == 1 << 20 and rows[1].origin == ""


def test_missing_dataset_reads_as_none():
    err = ZfsError(["zfs", "list"], 1, "cannot open 'tank/x': dataset does not exist")
    z = cli.Cli(FakeRunner([(["zfs", "list"], err)]))
    assert z.row("tank/x") is None
    assert err.missing and not err.busy


def test_error_classes_map_to_faults():
    e = ZfsError(["zfs", "create"], 1, "cannot create 'x': out of space")
    assert e.fault("VDICreate").code == 44
    e = ZfsError(["zfs", "destroy"], 1, "cannot destroy 'x': dataset is busy")
    assert e.fault("VDIDelete").code == 24
    assert ZfsError(["zfs"], 1, "weird").fault("VDIClone").code == 81


def test_set_and_get_argv():
    r = FakeRunner([(["zfs", "get"], "used\t10\navailable\t20\n")])
    z = cli.Cli(r)
    z.set("d", {"volsize": 5, "snapdev": "visible"})
    assert r.calls[0] == ["zfs", "set", "snapdev=visible", "volsize=5", "d"]
    assert z.get("d", ["used", "available"]) == {"used": "10", "available": "20"}
    assert r.calls[1] == ["zfs", "get", "-Hp", "-o", "property,value", "used,available", "d"]


def test_send_argv():
    z = cli.Cli(FakeRunner())
    assert z.send_argv("d@b") == ["zfs", "send", "d@b"]
    assert z.send_argv("d@b", "d@a") == ["zfs", "send", "-i", "d@a", "d@b"]


def test_create_pool_argv():
    r = FakeRunner()
    cli.Cli(r).create_pool("p", ["/dev/vdb", "/dev/vdc"], 12, True, {L.POOL_PROP: "u"})
    assert r.calls[0] == ["zpool", "create", "-f", "-o", "ashift=12", "-O",
                          "srkit:created-pool=u", "p", "/dev/vdb", "/dev/vdc"]


# --- metadata --------------------------------------------------------------------------

def test_meta_round_trip_and_identity_check():
    meta = m.new("disk", "d", is_snapshot=True, snapshot_of=A)
    text = L.encode_meta(S, meta)
    assert L.decode_meta(S, text) == meta
    # a value inherited from (or copied by) another dataset names another uuid: ignored
    assert L.decode_meta(A, text) is None
    assert L.decode_meta(A, "-") is None and L.decode_meta(A, "{bad") is None


def test_meta_too_long_is_cut_in_the_description_only():
    meta = m.new("disk", "x" * 20000)
    text = L.encode_meta(A, meta)
    assert len(text.encode()) < L.MAX_META
    back = L.decode_meta(A, text)
    assert back[m.NAME] == "disk" and back[m.DESCRIPTION].startswith("xxx")


# --- repair -----------------------------------------------------------------------------

def _rows(*specs):
    return L.parse_rows("\n".join(row(*s) if isinstance(s, tuple) else row(s) for s in specs))


def test_repair_rolls_an_interrupted_revert_back_or_forward():
    back = repair.plan(_rows(SR + "/" + A, SR + "/revert-" + A))
    assert back == [("destroy", SR + "/revert-" + A)]
    forward = repair.plan(_rows(SR + "/revert-" + A))
    assert forward == [("rename", SR + "/revert-" + A, SR + "/" + A)]


def test_repair_drops_only_unneeded_hidden_snapshots_and_retired_zvols():
    rows = _rows(SR + "/" + A,
                 (SR + "/" + A + "@base-1", "snapshot"),            # clone gone: drop
                 (SR + "/" + A + "@base-2", "snapshot", 1, SR + "/c"),  # has a clone: keep
                 (SR + "/" + A + "@x-100-9", "snapshot"),           # temporary, old: drop
                 (SR + "/" + A + "@x-995-9", "snapshot"),           # temporary, young: keep
                 SR + "/retired-1",                                  # no snapshots: drop
                 SR + "/retired-2",
                 (SR + "/retired-2@" + S, "snapshot"))              # a VDI: keep both
    assert sorted(repair.plan(rows, now=1000, grace=10)) == sorted([
        ("destroy", SR + "/" + A + "@base-1"), ("destroy", SR + "/" + A + "@x-100-9"),
        ("destroy", SR + "/retired-1")])
    # list() only settles reverts; collecting is sr_scan's
    assert repair.plan(rows, collect=False) == []


def test_repair_destroys_snapshots_before_their_retired_zvol():
    rows = _rows(SR + "/retired-3", (SR + "/retired-3@retired-" + S, "snapshot"))
    assert repair.plan(rows) == [("destroy", SR + "/retired-3@retired-" + S),
                                 ("destroy", SR + "/retired-3")]


# --- options ------------------------------------------------------------------------------

@pytest.mark.parametrize("key,value", [("volblocksize", 3000), ("volblocksize", 256),
                                       ("volblocksize", 1 << 20), ("compression", "brotli"),
                                       ("ashift", 20), ("pool", "/tank")])
def test_bad_options_are_115_naming_the_key(key, value):
    with pytest.raises(SRError) as e:
        O.check({"pool": "tank", key: value})
    assert e.value.code == 115 and key in str(e.value)


def test_good_options_pass():
    O.check({"pool": "tank/vms", "volblocksize": 65536, "compression": "zstd-3", "ashift": 12})
    assert O.required_feature("zstd-fast-10") == "zstd_compress"
    assert O.required_feature("off") is None


# --- send streams ----------------------------------------------------------------------------

def _rec(kind, body=b"", payloadlen=0):
    head = struct.pack("<II", kind, payloadlen) + body
    return head + b"\0" * (stream.RECORD - len(head))


def _write(obj, offset, length):
    body = struct.pack("<QII", obj, 0, 0) + struct.pack("<QQ", offset, length)
    return _rec(stream.WRITE, body) + b"\xab" * length


def _free(obj, offset, length):
    return _rec(stream.FREE, struct.pack("<QQQ", obj, offset, length))


def test_stream_records_give_allocated_and_changed_ranges():
    begin = _rec(stream.BEGIN, struct.pack("<Q", stream.MAGIC), 8) + b"\0" * 8
    data = (begin + _write(1, 0, 4096) + _write(1, 4096, 4096) + _write(2, 0, 512)
            + _free(1, 65536, stream.ALL_ONES) + _write(1, 32768, 4096)
            + _rec(stream.END))
    assert stream.allocated(io.BytesIO(data), 1 << 20) == [(0, 8192), (32768, 4096)]
    assert stream.split(io.BytesIO(data), 1 << 20) == (
        [(0, 8192), (32768, 4096)], [(65536, (1 << 20) - 65536)])


def test_intersect_ranges():
    assert stream.intersect([(0, 10), (20, 10)], [(5, 20)]) == [(5, 5), (20, 5)]
    assert stream.intersect([(0, 10)], []) == []


def test_stream_rejects_garbage():
    with pytest.raises(ValueError):
        list(stream.records(io.BytesIO(_rec(stream.WRITE))))
