"""CBT on sm_drivers/RBDSR against the real cluster: the bitmap of
vdi_list_changed_blocks against the bytes written with librbd itself, over three
generations with a resize, a discard and a data_destroy; what data_destroy keeps
(the RBD snapshot, as Ceph lists it); disable/enable; scan.

RBD reports changes byte-exactly (diff_iterate per changed object): the bitmap must
be exactly the 64 KiB blocks written, no more (docs/ceph.md)."""
import json

import pytest

from simulator.conformance import cbt_flow as cbt
from simulator.errors import XapiError

MiB = 1024 * 1024
B = cbt.BLOCK


exact = cbt.check_exact


def test_three_generations_resize_discard_and_data_destroy(pool, sr):
    size = 24 * MiB
    v = pool.vdi_create(sr.ref, size, name_label="cbt")
    base = sr.uuid_of(v)
    cbt.enable(pool, v)
    assert "VDI_CONFIG_CBT" in pool.features("rbd")
    sr.write(base, 0, b"\x01" * (8 * MiB))
    s1 = cbt.snapshot(pool, v)
    # aligned, unaligned, across a 64 KiB edge and across a 4 MiB object edge
    gen2 = [(B, B), (3 * MiB + 100, 10), (5 * B - 1, 2), (4 * MiB - 512, 1024)]
    for offset, length in gen2:
        sr.write(base, offset, b"\x02" * length)
    s2 = cbt.snapshot(pool, v)
    exact(cbt.changed_blocks(pool, s1, s2), size, gen2)
    # generation 3: a discard (reads zeros now: changed) and a resize
    with sr.image(base) as img:
        img.discard(6 * MiB, 2 * MiB)
    grown = pool.vdi_resize(v, size + 5 * MiB + 4096)
    sr.write(base, size + MiB, b"\x03" * 4096)
    gen3 = [(6 * MiB, 2 * MiB), (size, grown - size)]
    s3 = cbt.snapshot(pool, v)
    exact(cbt.changed_blocks(pool, s2, s3), grown, gen3)
    exact(cbt.changed_blocks(pool, s1, s3), grown, gen2 + gen3)
    # data_destroy keeps the RBD snapshot (the diff base) and marks the VDI
    cbt.data_destroy(pool, s1)
    snap1 = sr.uuid_of(s1)
    assert snap1 in sr.snaps(base)
    stored = json.loads(sr.metadata(base)["srkit.vdi." + snap1])
    assert stored["meta"]["cbt_data_destroyed"] == "true"
    assert stored["meta"]["type"] == "cbt_metadata"
    exact(cbt.changed_blocks(pool, s1, s3), grown, gen2 + gen3)
    sr.write(base, 0, b"\x04" * 512)
    exact(cbt.changed_blocks(pool, s3, v), grown, [(0, 512)])
    # the live data is what was written
    assert sr.read(base, 3 * MiB + 100, 10) == b"\x02" * 10
    assert sr.read(base, 6 * MiB, 4096) == b"\0" * 4096
    for x in (s3, s2, s1, v):
        pool.vdi_destroy(x)
    assert sr.images() == []


def test_disable_then_enable_starts_afresh_and_scan_keeps_state(pool, sr):
    v = pool.vdi_create(sr.ref, 8 * MiB)
    base = sr.uuid_of(v)
    cbt.enable(pool, v)
    s1 = cbt.snapshot(pool, v)
    cbt.data_destroy(pool, s1)
    cbt.disable(pool, v)
    stored = json.loads(sr.metadata(base)["srkit.vdi." + base])
    assert stored["meta"]["cbt_enabled"] == "false" and "cbt_epoch" not in stored["meta"]
    cbt.enable(pool, v)
    s2 = cbt.snapshot(pool, v)
    with pytest.raises(XapiError) as e:
        cbt.changed_blocks(pool, s1, s2)
    assert e.value.code == "SR_BACKEND_FAILURE_460"
    # xapi's database lost the cbt_enabled flag: scan restores it from the backend
    pool.db.update("VDI", v, cbt_enabled=False)
    pool.sr_scan(sr.ref)
    assert pool.vdi_record(v)["cbt_enabled"] is True
    assert pool.vdi_record(s1)["type"] == "cbt_metadata"
    cbt.refused_as_disk(pool, s1)
    for x in (s2, s1, v):
        pool.vdi_destroy(x)


def test_vdis_of_two_srs_are_unrelated(pool, make_sr):
    sr1, sr2 = make_sr(), make_sr()
    a = pool.vdi_create(sr1.ref, 4 * MiB)
    b = pool.vdi_create(sr2.ref, 4 * MiB)
    cbt.enable(pool, a)
    cbt.enable(pool, b)
    sa = cbt.snapshot(pool, a)
    with pytest.raises(XapiError) as e:
        cbt.changed_blocks(pool, sa, b)
    assert e.value.code == "SR_BACKEND_FAILURE_460" and "another SR" in str(e.value)
    assert sr2.snaps(sr2.uuid_of(b)) == [] and sr1.snaps(sr1.uuid_of(a)) == [sr1.uuid_of(sa)]
    for x in (sa, a, b):
        pool.vdi_destroy(x)


def test_revert_keeps_the_set_and_the_bitmap_follows_content(pool, sr):
    """After a revert to S1 the VDI holds S1's bytes again: a later snapshot differs
    from S1 by what was written after the revert, and from S2 (taken before the
    revert) also by what the revert undid. RBD's rollback rewrites whole objects, so
    those count as changed: the bound is the 4 MiB object there, not 64 KiB."""
    v = pool.vdi_create(sr.ref, 16 * MiB)
    base = sr.uuid_of(v)
    cbt.enable(pool, v)
    sr.write(base, 0, b"\x01" * MiB)
    s1 = cbt.snapshot(pool, v)
    sr.write(base, 2 * MiB, b"\x02" * B)          # undone by the revert
    s2 = cbt.snapshot(pool, v)
    pool.vdi_revert(s1)
    assert pool.vdi_record(v)["cbt_enabled"]
    sr.write(base, 5 * MiB, b"\x03" * 100)
    s3 = cbt.snapshot(pool, v)
    obj = 4 * MiB
    got = cbt.check_bitmap(cbt.changed_blocks(pool, s1, s3), 16 * MiB, [(5 * MiB, 100)],
                           obj, may_differ=[(2 * MiB, B)])
    assert not got & cbt.blocks_of(8 * MiB, 8 * MiB)    # objects nothing touched
    cbt.check_bitmap(cbt.changed_blocks(pool, s2, s3), 16 * MiB,
                     [(2 * MiB, B), (5 * MiB, 100)], obj)
    for x in (s3, s2, s1, v):
        pool.vdi_destroy(x)
