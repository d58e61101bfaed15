"""framework/cbt.py on its own: the bitmap bit by bit, the relation rules, and the
capability a driver gets from its primitives."""
import base64

import pytest

from framework import cbt
from framework import driver as contract
from framework.driver import Driver, Volume
from framework.errors import SRError

B = cbt.BLOCK


def bits_of(bitmap):
    """'0101…' MSB first, as xapi's docs decode the reply."""
    return "".join(format(byte, "08b") for byte in bitmap)


def test_block_is_64_kib_and_bits_are_msb_first():
    assert B == 65536
    assert bits_of(cbt.bitmap([(0, 1)], 16 * B)) == "1" + "0" * 15
    assert bits_of(cbt.bitmap([(15 * B, 1)], 16 * B)) == "0" * 15 + "1"


def test_length_covers_the_size_exactly_rounded_up_to_blocks_then_bytes():
    assert len(cbt.bitmap([], 0)) == 0
    assert len(cbt.bitmap([], 1)) == 1          # one partial block: one bit, one byte
    assert len(cbt.bitmap([], 8 * B)) == 1
    assert len(cbt.bitmap([], 8 * B + 1)) == 2
    assert len(cbt.bitmap([], 64 * 1024 ** 3)) == 64 * 1024 ** 3 // B // 8


@pytest.mark.parametrize("offset,length,expected", [
    (0, B, {0}),
    (B - 1, 2, {0, 1}),                 # unaligned, across a block edge
    (B, B, {1}),                        # aligned, exactly one block
    (3 * B + 5, 20 * B, set(range(3, 24))),   # long run: the whole-byte fill
    (7 * B, 2 * B, {7, 8}),             # across a byte edge
    (8 * B, 8 * B, set(range(8, 16))),  # exactly one byte
])
def test_each_touched_block_is_set_and_no_other(offset, length, expected):
    bm = cbt.bitmap([(offset, length)], 40 * B)
    assert {i for i, c in enumerate(bits_of(bm)) if c == "1"} == expected


def test_extents_past_the_end_are_clipped_and_empty_ones_ignored():
    bm = cbt.bitmap([(3 * B, 0), (9 * B, 100 * B), (100 * B, B)], 10 * B)
    assert bits_of(bm) == "0" * 9 + "1" + "000000"


def test_growth_sets_every_block_past_the_old_size_including_the_partial_one():
    bm = cbt.bitmap([], 10 * B, grown_from=4 * B + 7)
    assert bits_of(bm)[:10] == "0000111111"
    assert bits_of(cbt.bitmap([], 10 * B, grown_from=10 * B)) == "0" * 16


def test_encode_is_plain_base64_without_newline():
    text = cbt.encode(cbt.bitmap([(0, B)], 8 * B))
    assert text == "gA==" and base64.b64decode(text) == b"\x80"


def vol(uuid, **meta):
    return Volume(uuid, 8 * B, meta={k: str(v) for k, v in meta.items()})


def test_relation_rules_give_460_as_sm_does():
    s1 = vol("s1", cbt_enabled="true", cbt_epoch="e", cbt_stamp="1.5", is_a_snapshot="true")
    s2 = vol("s2", cbt_enabled="true", cbt_epoch="e", cbt_stamp="2.5", is_a_snapshot="true")
    live = vol("v", cbt_enabled="true", cbt_epoch="e")
    cbt.check_related(s1, s2)
    cbt.check_related(s1, live)
    for a, b in ((s2, s1), (live, s1),
                 (s1, vol("x", cbt_enabled="true", cbt_epoch="other",
                          cbt_stamp="3", is_a_snapshot="true")),
                 (s1, vol("v", cbt_enabled="false"))):
        with pytest.raises(SRError) as e:
            cbt.check_related(a, b)
        assert e.value.code == 460 and "unrelated" in e.value.message


def test_snapshot_joins_the_set_clone_leaves_it():
    meta = {"cbt_enabled": "true", "cbt_epoch": "e", "name_label": "n"}
    snap = cbt.for_snapshot(meta)
    assert snap["cbt_epoch"] == "e" and float(snap["cbt_stamp"]) > 0
    clone = cbt.for_clone(dict(snap, cbt_data_destroyed="true"))
    assert not any(k in clone for k in cbt.KEYS) and clone["name_label"] == "n"
    assert not any(k in cbt.for_snapshot({"name_label": "n"}) for k in cbt.KEYS)


def test_capability_needs_both_primitives():
    class Diff(Driver):
        def changed_extents(self, uuid, base_uuid):
            return []

    class Both(Diff):
        def data_destroy(self, uuid):
            pass
    assert "VDI_CONFIG_CBT" not in contract.capabilities(Diff)
    assert "VDI_CONFIG_CBT" in contract.capabilities(Both)
    assert cbt.offered(Both) and not cbt.offered(Diff)


def test_fault_codes_are_sms():
    assert SRError("CBTChangedBlocksError").code == 460
    assert SRError("CBTMetadataInconsistent").code == 459
