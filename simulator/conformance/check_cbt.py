"""(f) Changed block tracking: VDI_CONFIG_CBT and its four commands (smapiv1.md §2.3).

A driver without the capability must refuse every CBT command (38, which xapi turns
into SR_OPERATION_NOT_SUPPORTED). One with it must give a bitmap that sets every
64 KiB block written between two snapshots (never under-report: that is a silently
corrupt incremental backup), over generations, across a resize and a data_destroy,
and the faults sm gives: 460 across a disable or between unrelated VDIs, 66 for a
cbt_metadata VDI used as a disk.
"""
import pytest

from simulator import XapiError
from simulator.conformance import cbt_flow as cbt
from simulator.conformance import helpers as h
from simulator.conformance.check_lifecycle import read_vdi, write_vdi

MiB = h.MiB
# a bound every backend meets (RBD object, S3 chunk and zvol block are all <= 4 MiB
# in their defaults); each driver's own test checks its exact granularity
GRANULARITY = 4 * MiB
COMMANDS = ("vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy")


def _fault(excinfo):
    return excinfo.value.code


@pytest.mark.requires("VDI_CREATE")
def test_cbt_commands_follow_the_capability(pool, bench, sr, caps):
    vdi = bench.make_vdi(sr, 4 * MiB)
    try:
        if "VDI_CONFIG_CBT" not in caps:
            for command in COMMANDS:
                with pytest.raises(XapiError) as e:
                    pool.call(command, vdi=vdi)
                assert _fault(e) == "SR_OPERATION_NOT_SUPPORTED", command
            with pytest.raises(XapiError) as e:
                pool.call("vdi_list_changed_blocks", vdi=vdi, args=[vdi])
            assert _fault(e) == "SR_OPERATION_NOT_SUPPORTED"
            return
        cbt.enable(pool, vdi)
        cbt.enable(pool, vdi)          # xapi may repeat a command: a no-op
        cbt.disable(pool, vdi)
        cbt.disable(pool, vdi)
    finally:
        pool.vdi_destroy(vdi)


@pytest.mark.requires("VDI_CONFIG_CBT", "VDI_SNAPSHOT", "VDI_ATTACH")
def test_changed_blocks_cover_every_write_over_generations(pool, bench, sr, caps):
    size = 16 * MiB
    vdi = bench.make_vdi(sr, size)
    cbt.enable(pool, vdi)
    write_vdi(pool, vdi, 0, b"\x5a" * (2 * MiB))
    s1 = cbt.snapshot(pool, vdi)
    assert pool.vdi_record(s1)["cbt_enabled"], "a snapshot inherits cbt_enabled"
    # generation 2: aligned, unaligned and across a 64 KiB edge
    gen2 = [(4 * MiB, 64 * 1024), (9 * MiB + 1000, 300), (12 * MiB - 10, 20)]
    for offset, length in gen2:
        write_vdi(pool, vdi, offset, b"\xa5" * length)
    s2 = cbt.snapshot(pool, vdi)
    cbt.check_bitmap(cbt.changed_blocks(pool, s1, s2), size, gen2, GRANULARITY)
    # generation 3, with a resize in between when the driver can
    gen3 = [(MiB, 4096)]
    write_vdi(pool, vdi, MiB, b"\x11" * 4096)
    new_size = size
    if "VDI_RESIZE" in caps:
        new_size = pool.vdi_resize(vdi, size + 3 * MiB + 512)
        gen3.append((size, new_size - size))     # the grown part counts as changed
    s3 = cbt.snapshot(pool, vdi)
    cbt.check_bitmap(cbt.changed_blocks(pool, s2, s3), new_size, gen3, GRANULARITY)
    # from the first to the third: the union
    cbt.check_bitmap(cbt.changed_blocks(pool, s1, s3), new_size, gen2 + gen3, GRANULARITY)
    # to the live VDI itself (the newest point of the set)
    write_vdi(pool, vdi, 2 * MiB, b"\x22" * 512)
    cbt.check_bitmap(cbt.changed_blocks(pool, s3, vdi), new_size, [(2 * MiB, 512)],
                     GRANULARITY)
    # data_destroy of the older snapshots: listing from them still works
    cbt.data_destroy(pool, s1)
    cbt.data_destroy(pool, s2)
    cbt.check_bitmap(cbt.changed_blocks(pool, s2, s3), new_size, gen3, GRANULARITY)
    cbt.check_bitmap(cbt.changed_blocks(pool, s1, s3), new_size, gen2 + gen3, GRANULARITY)
    # and the live data is intact
    assert read_vdi(pool, vdi, 4 * MiB, 64 * 1024) == b"\xa5" * (64 * 1024)
    assert read_vdi(pool, s3, MiB, 4096) == b"\x11" * 4096
    for v in (s3, s2, s1, vdi):
        pool.vdi_destroy(v)


@pytest.mark.requires("VDI_CONFIG_CBT", "VDI_SNAPSHOT", "VDI_ATTACH")
def test_a_data_destroyed_snapshot_is_metadata_only_and_scan_keeps_it(pool, bench, sr, caps):
    vdi = bench.make_vdi(sr, 4 * MiB)
    cbt.enable(pool, vdi)
    s1 = cbt.snapshot(pool, vdi)
    with pytest.raises(XapiError) as e:
        pool.call("vdi_data_destroy", vdi=vdi)    # only snapshots
    assert _fault(e) == "SR_BACKEND_FAILURE_66"
    cbt.data_destroy(pool, s1)
    cbt.data_destroy(pool, s1)                    # repeated: a no-op
    mark = bench.mark()
    # xapi refuses first (simulator/cbt.py); the driver itself refuses too (66), for a
    # client that reaches it with a stale type
    cbt.refused_as_disk(pool, s1)
    if "VDI_CLONE" in caps:
        with pytest.raises(XapiError) as e:
            pool.vdi_clone(s1)
        assert _fault(e) == "VDI_INCOMPATIBLE_TYPE"
        with pytest.raises(XapiError) as e:
            pool.call("vdi_clone", vdi=s1)
        assert _fault(e) == "SR_BACKEND_FAILURE_66"
    assert [c.command for c in bench.calls_since(mark)].count("vdi_clone") <= 1
    # scan keeps it, and a VDI xapi forgot comes back as cbt_metadata with CBT on
    uuid = pool.vdi_record(s1)["uuid"]
    pool.sr_scan(sr)
    assert pool.vdi_record(s1)["type"] == "cbt_metadata"
    bench.forget_vdi(s1)
    pool.sr_scan(sr)
    back = pool.by_uuid("VDI", uuid)
    rec = pool.vdi_record(back)
    assert rec["type"] == "cbt_metadata" and rec["cbt_enabled"] and rec["is_a_snapshot"]
    write_vdi(pool, vdi, 0, b"\x33" * 100)
    cbt.check_bitmap(cbt.changed_blocks(pool, back, vdi), 4 * MiB, [(0, 100)], GRANULARITY)
    for v in (back, vdi):
        pool.vdi_destroy(v)


@pytest.mark.requires("VDI_CONFIG_CBT", "VDI_SNAPSHOT")
def test_unrelated_pairs_give_460_and_change_nothing(pool, bench, sr, caps):
    vdi = bench.make_vdi(sr, 4 * MiB)
    other = bench.make_vdi(sr, 4 * MiB)
    cbt.enable(pool, vdi)
    cbt.enable(pool, other)
    s1 = cbt.snapshot(pool, vdi)
    s2 = cbt.snapshot(pool, vdi)
    o1 = cbt.snapshot(pool, other)
    nocbt = bench.make_vdi(sr, 4 * MiB)           # CBT never enabled
    plain = pool.vdi_snapshot(nocbt)
    cbt.disable(pool, vdi)
    cbt.enable(pool, vdi)                         # a new backup set
    s3 = cbt.snapshot(pool, vdi)
    for a, b in ((s1, s1), (s2, s1), (vdi, s1), (s1, o1), (s2, s3), (s1, vdi),
                 (plain, nocbt)):
        with pytest.raises(XapiError) as e:
            cbt.changed_blocks(pool, a, b)
        assert _fault(e) == "SR_BACKEND_FAILURE_460", (a, b)
    cbt.changed_blocks(pool, s1, s2)              # still fine within the old set
    with pytest.raises(XapiError) as e:
        pool.call("vdi_enable_cbt", vdi=s3)       # not on a snapshot (sm: VDIType)
    assert _fault(e) == "SR_BACKEND_FAILURE_66"
    clone = pool.vdi_clone(vdi) if "VDI_CLONE" in caps else None
    if clone:
        with pytest.raises(XapiError) as e:
            cbt.changed_blocks(pool, s3, clone)   # a clone starts with CBT off
        assert _fault(e) == "SR_BACKEND_FAILURE_460"
    for v in [x for x in (clone, s3, plain, nocbt, o1, s2, s1, other, vdi) if x]:
        pool.vdi_destroy(v)
