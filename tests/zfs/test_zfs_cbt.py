"""CBT on sm_drivers/ZFSVolSR on real OpenZFS (in the guest): the bitmap of
vdi_list_changed_blocks against the bytes written through the attached zvol, over
three generations with a discard, a resize and a data_destroy; what data_destroy
keeps (the ZFS snapshot, as `zfs list` shows it); disable/enable; scan; and the
CBT checks of the conformance suite.

The zvols here have the default volblocksize (16 KiB), finer than the bitmap's
64 KiB block: the bitmap must be exactly the 64 KiB blocks written (docs/zfs.md)."""
import os

import pytest

from simulator.conformance import cbt_flow as cbt
from simulator.conformance import outcome
from simulator.errors import XapiError
from simulator.testkit import read_at, write_at
from zfs_rig import MiB, sh

pytestmark = pytest.mark.zfs
B = cbt.BLOCK


exact = cbt.check_exact


def write(pool, vdi, writes, byte):
    path = pool.vdi_attach(vdi)["params"]
    try:
        for offset, length in writes:
            write_at(path, offset, byte * length)
    finally:
        pool.vdi_detach(vdi)
    return path



def test_three_generations_discard_resize_and_data_destroy(pool, make_sr, zfs):
    sr = make_sr()
    size = 16 * MiB
    v = pool.vdi_create(sr.ref, size, name_label="cbt")
    zvol = sr.zvol(v)
    cbt.enable(pool, v)
    assert "VDI_CONFIG_CBT" in pool.features("zfsvol")
    write(pool, v, [(0, 6 * MiB)], b"\x01")
    s1 = cbt.snapshot(pool, v)
    # aligned, unaligned, across a 16 KiB (volblocksize) and a 64 KiB edge
    gen2 = [(B, B), (3 * MiB + 100, 10), (5 * B - 1, 2), (2 * MiB - 16384 - 8, 16)]
    write(pool, v, gen2, b"\x02")
    s2 = cbt.snapshot(pool, v)
    exact(cbt.changed_blocks(pool, s1, s2), size, gen2)
    # generation 3: a discard of written data (reads zeros now: changed), a discard of a
    # hole (unchanged), a resize and a write past the old end
    path = pool.vdi_attach(v)["params"]
    try:
        sh("blkdiscard", "-o", str(4 * MiB), "-l", str(MiB), path)
        sh("blkdiscard", "-o", str(12 * MiB), "-l", str(MiB), path)
    finally:
        pool.vdi_detach(v)
    grown = pool.vdi_resize(v, size + 5 * MiB)
    write(pool, v, [(size + MiB, 4096)], b"\x03")
    gen3 = [(4 * MiB, MiB), (size, grown - size)]
    s3 = cbt.snapshot(pool, v)
    exact(cbt.changed_blocks(pool, s2, s3), grown, gen3)
    exact(cbt.changed_blocks(pool, s1, s3), grown, gen2 + gen3)

    # data_destroy keeps the ZFS snapshot (the send base) and marks the VDI
    snap1 = "%s@%s" % (zvol, sr.loc(s1))
    cbt.data_destroy(pool, s1)
    assert zfs.rows(sr.dataset)[snap1]["type"] == "snapshot"
    meta, source = zfs.meta(snap1)
    assert source == "local"
    assert meta["cbt_data_destroyed"] == "true" and meta["type"] == "cbt_metadata"
    exact(cbt.changed_blocks(pool, s1, s3), grown, gen2 + gen3)
    exact(cbt.changed_blocks(pool, s1, v), grown, gen2 + gen3)
    write(pool, v, [(0, 512)], b"\x04")
    exact(cbt.changed_blocks(pool, s3, v), grown, [(0, 512)])
    exact(cbt.changed_blocks(pool, s1, v), grown, gen2 + gen3 + [(0, 512)])
    # a data-destroyed VDI is no disk any more: xapi refuses, and so does the driver
    cbt.refused_as_disk(pool, s1)
    # the live data is what was written
    path = pool.vdi_attach(v, writable=False)["params"]
    try:
        assert read_at(path, 3 * MiB + 100, 10) == b"\x02" * 10
        assert read_at(path, 4 * MiB, 4096) == b"\0" * 4096
        assert read_at(path, size + MiB, 4096) == b"\x03" * 4096
    finally:
        pool.vdi_detach(v)
    for x in (s3, s2, s1, v):
        pool.vdi_destroy(x)
    assert [n for n in zfs.names(sr.dataset) if n != sr.dataset] == []


def test_disable_then_enable_starts_afresh_and_scan_keeps_state(pool, make_sr, zfs):
    sr = make_sr()
    v = pool.vdi_create(sr.ref, 8 * MiB)
    cbt.enable(pool, v)
    s1 = cbt.snapshot(pool, v)
    cbt.data_destroy(pool, s1)
    cbt.disable(pool, v)
    meta, _ = zfs.meta(sr.zvol(v))
    assert meta["cbt_enabled"] == "false" and "cbt_epoch" not in meta
    cbt.enable(pool, v)
    s2 = cbt.snapshot(pool, v)
    with pytest.raises(XapiError) as e:
        cbt.changed_blocks(pool, s1, s2)
    assert e.value.code == "SR_BACKEND_FAILURE_460"
    # xapi's database lost the VDIs: scan brings them back with their CBT state
    uuids = [pool.vdi_record(r)["uuid"] for r in (v, s1, s2)]
    for ref in (s2, s1, v):
        pool.db.delete("VDI", ref)
    pool.sr_scan(sr.ref)
    v, s1, s2 = [pool.by_uuid("VDI", u) for u in uuids]
    assert pool.vdi_record(v)["cbt_enabled"] is True
    assert pool.vdi_record(v)["type"] == "user"
    assert pool.vdi_record(s1)["type"] == "cbt_metadata"
    cbt.refused_as_disk(pool, s1)
    write(pool, v, [(MiB + 7, 9)], b"\x05")
    exact(cbt.changed_blocks(pool, s2, v), 8 * MiB, [(MiB + 7, 9)])
    for x in (s2, s1, v):
        pool.vdi_destroy(x)
    assert [n for n in zfs.names(sr.dataset) if n != sr.dataset] == []


# ZFSVolSR advertises no activate; the CBT checks must all run
CBT_SKIPS = set()


# the conformance run's CBT checks: ~10 min of TCG time, so one of the guest's long rows
# with the whole conformance run (./dev test: SRKIT_LONG=1 or SRKIT_ZFS_CONFORMANCE=1)
@pytest.mark.skipif(os.environ.get("SRKIT_ZFS_CONFORMANCE") == "0",
                    reason="SRKIT_ZFS_CONFORMANCE=0")
def test_conformance_cbt_checks_pass_on_zfsvol(zpool, tmp_path):
    result = outcome.run("ZFSVolSR", {"pool": zpool}, tmp_path, timeout=1800,
                         pytest_args=["-k", "cbt or data_destroyed or unrelated_pairs"])
    result.assert_green(CBT_SKIPS, min_passed=4)
    print("conformance (cbt): %d passed: %s" % (len(result.passed), sorted(result.passed)))
