"""CBT on sm_drivers/S3SR against SeaweedFS: the bitmap of vdi_list_changed_blocks
against the bytes written through the attached VDI, over three generations with a
resize and a data_destroy; what data_destroy keeps (the manifest's hashes) and
frees (the chunks, as the bucket lists them); scan keeps it.

S3 compares chunk hashes: the bitmap is exactly the chunks written (CHUNK = 1 MiB in
these tests, 16 blocks of 64 KiB each), docs/s3.md."""
from s3_rig import CHUNK, MiB, pattern, write_vdi
from simulator.conformance import cbt_flow as cbt


def chunk_exact(text, size, writes):
    got = cbt.check_bitmap(text, size, writes, CHUNK)
    want = set()
    for offset, length in writes:
        first, last = offset // CHUNK, (offset + length - 1) // CHUNK
        want |= cbt.blocks_of(first * CHUNK, min((last + 1) * CHUNK, size) - first * CHUNK)
    assert got == want
    return got


def test_three_generations_resize_and_data_destroy(pool, sr):
    size = 12 * MiB
    v = pool.vdi_create(sr.ref, size, name_label="cbt")
    cbt.enable(pool, v)
    write_vdi(pool, v, 0, pattern(1, 6 * MiB))
    s1 = cbt.snapshot(pool, v)
    gen2 = [(CHUNK + 100, 10), (3 * CHUNK - 5, 10), (8 * CHUNK, CHUNK)]
    for i, (offset, length) in enumerate(gen2):
        write_vdi(pool, v, offset, pattern((2, i), length))
    s2 = cbt.snapshot(pool, v)
    chunk_exact(cbt.changed_blocks(pool, s1, s2), size, gen2)
    grown = pool.vdi_resize(v, size + 2 * MiB + 512)
    write_vdi(pool, v, 5 * MiB, pattern(3, 4096))
    gen3 = [(5 * MiB, 4096), (size, grown - size)]
    s3 = cbt.snapshot(pool, v)
    chunk_exact(cbt.changed_blocks(pool, s2, s3), grown, gen3)
    chunk_exact(cbt.changed_blocks(pool, s1, s3), grown, gen2 + gen3)

    # data_destroy of s1: its chunk map becomes hashes only, and the chunks nobody
    # else holds (the six written first that were overwritten since) are collected
    before = set(sr.chunks())
    hashes = dict(sr.manifest(sr.location(s1))["chunks"])
    cbt.data_destroy(pool, s1)
    doc = sr.manifest(sr.location(s1))
    assert doc["chunks"] == {} and doc["cbt_hashes"] == hashes
    assert doc["meta"]["cbt_data_destroyed"] == "true"
    sr.gc(grace=0)
    after = set(sr.chunks())
    live = set()
    for ref in (v, s2, s3):
        live |= set(sr.manifest(sr.location(ref))["chunks"].values())
    freed = set(hashes.values()) - live
    assert freed and not any(h in c for h in freed for c in after), "unique chunks stay"
    assert after < before
    chunk_exact(cbt.changed_blocks(pool, s1, s3), grown, gen2 + gen3)
    pool.sr_update(sr.ref)
    assert int(pool.vdi_record(s1)["physical_utilisation"]) >= 0
    for x in (s3, s2, s1, v):
        pool.vdi_destroy(x)


def test_scan_on_a_fresh_database_rebuilds_cbt_state(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB)
    cbt.enable(pool, v)
    s1 = cbt.snapshot(pool, v)
    cbt.data_destroy(pool, s1)
    uuids = {pool.vdi_record(r)["uuid"]: r for r in (v, s1)}
    for ref in (s1, v):
        pool.db.delete("VDI", ref)
    pool.sr_scan(sr.ref)
    back = {u: pool.vdi_record(pool.by_uuid("VDI", u)) for u in uuids}
    snap = back[list(uuids)[1]]
    assert snap["type"] == "cbt_metadata" and snap["cbt_enabled"] is True
    live = back[list(uuids)[0]]
    assert live["type"] == "user" and live["cbt_enabled"] is True
    new_v, new_s1 = pool.by_uuid("VDI", list(uuids)[0]), pool.by_uuid("VDI", list(uuids)[1])
    write_vdi(pool, new_v, 0, b"x" * 10)
    chunk_exact(cbt.changed_blocks(pool, new_s1, new_v), 4 * MiB, [(0, 10)])
    cbt.refused_as_disk(pool, new_s1)
    for x in (new_s1, new_v):
        pool.vdi_destroy(x)
