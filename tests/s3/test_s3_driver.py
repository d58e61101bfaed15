"""sm_drivers/S3SR against a real S3 server (SeaweedFS, tests/rigs/s3.sh), through the
simulated pool; every assertion on layout reads the bucket itself with boto3. The layout,
GC and lease tests (marked ``s3_servers``) also run on radosgw (tests/rigs/rgw.sh)."""
import threading
import time

import pytest

from s3_rig import CHUNK, MiB, pattern, read_vdi, write_vdi
from simulator.testkit import driver_context, read_at, write_at
from simulator.errors import XapiError


def backend_code(exc):
    # xapi maps 24 to VDI_IN_USE, the others to SR_BACKEND_FAILURE_<n>
    return "24" if exc.code == "VDI_IN_USE" else exc.code.rsplit("_", 1)[-1]


@pytest.mark.s3_servers
def test_sr_create_probe_and_vdi_manifest_with_meta(pool, sr, device_config):
    assert sr.keys() == [(sr.root + "sr.json", sr.keys()[0][1])]
    xml = pool.sr_probe("s3", device_config)
    assert sr.uuid in xml
    v = pool.vdi_create(sr.ref, 10 * MiB, name_label="data disk", name_description="d")
    uuid = sr.location(v)
    doc = sr.manifest(uuid)
    assert doc["size"] == 10 * MiB and doc["chunks"] == {} and doc["chunk_size"] == CHUNK
    assert doc["meta"]["name_label"] == "data disk"
    assert sr.chunks() == []


@pytest.mark.parametrize("key,value", [("chunk_size", "1000"), ("compression", "99"),
                                       ("endpoint", "ftp://x"), ("bucket", "A_B"),
                                       ("verify_tls", "maybe")])
def test_bad_device_config_is_115_naming_the_key(pool, device_config, key, value):
    dc = dict(device_config, **{key: value})
    with pytest.raises(XapiError) as e:
        pool.sr_create("s3", dc, name_label="bad", shared=True)
    assert backend_code(e.value) == "115" and key in str(e.value)


@pytest.mark.s3_servers
@pytest.mark.parametrize("change", ["wrong-key", "unreachable", "no-bucket"])
def test_unreachable_or_refused_is_47_quickly(pool, device_config, change):
    dc = dict(device_config)
    if change == "wrong-key":
        dc["secret_key"] = "not-the-secret"
    elif change == "unreachable":
        dc["endpoint"] = "http://127.0.0.1:9"  # discard port: nothing listens
    else:
        dc["bucket"] = "no-such-bucket-here"
    start = time.time()
    with pytest.raises(XapiError) as e:
        pool.sr_create("s3", dc, name_label="bad", shared=True)
    assert backend_code(e.value) == "47", e.value
    assert time.time() - start < 30


@pytest.mark.s3_servers
def test_write_dedup_holes_and_compression(pool, sr):
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="x")
    data = pattern(1, CHUNK)
    compressible = b"srkit " * (CHUNK // 6) + b"\0" * (CHUNK % 6)
    path = pool.vdi_attach(v)["params"]
    try:
        write_at(path, 0, data)                  # chunk 0
        write_at(path, 3 * CHUNK, data)          # chunk 3: same bytes -> same object
        write_at(path, 5 * CHUNK, compressible)  # chunk 5: compresses
        write_at(path, 6 * CHUNK + 4096, b"\0" * 4096)  # zeros: stays a hole
        assert read_at(path, 3 * CHUNK, CHUNK) == data
    finally:
        pool.vdi_detach(v)
    doc = sr.manifest(sr.location(v))
    assert sorted(doc["chunks"]) == ["0", "3", "5"]
    assert doc["chunks"]["0"] == doc["chunks"]["3"]
    sizes = dict((k.rsplit("/", 1)[1], s) for k, s in sr.keys("chunks/"))
    assert len(sizes) == 2
    assert sizes[doc["chunks"]["5"]] < CHUNK // 10
    assert read_vdi(pool, v, 5 * CHUNK, CHUNK) == compressible
    assert read_vdi(pool, v, 6 * CHUNK, CHUNK) == b"\0" * CHUNK


@pytest.mark.s3_servers
def test_snapshot_and_clone_add_no_chunks_and_stay_independent(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="golden")
    write_vdi(pool, v, 0, pattern(2, 4 * MiB))
    before = sr.chunks()
    assert len(before) == 4
    s = pool.vdi_snapshot(v)
    c = pool.vdi_clone(v)
    assert sr.chunks() == before
    assert sr.manifest(sr.location(c))["chunks"] == sr.manifest(sr.location(v))["chunks"]
    snap_meta = sr.manifest(sr.location(s))["meta"]
    assert snap_meta["is_a_snapshot"] == "true" and snap_meta["snapshot_of"] == sr.location(v)
    write_vdi(pool, c, 0, pattern(3, MiB))
    assert len(sr.chunks()) == 5
    assert read_vdi(pool, v, 0, MiB) == pattern(2, 4 * MiB)[:MiB]
    assert read_vdi(pool, c, 0, MiB) == pattern(3, MiB)
    assert read_vdi(pool, s, 0, MiB) == pattern(2, 4 * MiB)[:MiB]
    # revert copies the snapshot's chunk map back
    write_vdi(pool, v, 0, pattern(4, MiB))
    pool.vdi_revert(s)
    assert read_vdi(pool, v, 0, MiB) == pattern(2, 4 * MiB)[:MiB]


@pytest.mark.s3_servers
def test_delete_everything_then_gc_leaves_no_chunk(pool, sr):
    v = pool.vdi_create(sr.ref, 3 * MiB, name_label="x")
    write_vdi(pool, v, 0, pattern(5, 3 * MiB))
    s = pool.vdi_snapshot(v)
    assert len(sr.chunks()) == 3
    pool.vdi_destroy(v)
    assert sr.gc(grace=0)["deleted"] == 0      # the snapshot still references them
    pool.vdi_destroy(s)
    assert sr.manifests() == []
    assert len(sr.chunks()) == 3                # deleting drops manifests only
    stats = sr.gc(grace=3600)
    assert stats["young"] == 3 and len(sr.chunks()) == 3  # within the grace period: kept
    assert sr.gc(grace=0)["deleted"] == 3
    assert sr.chunks() == []


def test_gc_never_frees_what_an_uploader_on_another_host_is_writing(pool, sr):
    """Race a writer (flushing new data through the attached device, on host 1) with a
    collector looping on the master: after detach every byte reads back."""
    v = pool.vdi_create(sr.ref, 16 * MiB, name_label="busy")
    host = pool.hosts[1]
    path = pool.vdi_attach(v, host=host)["params"]
    stop = threading.Event()
    runs = []

    def collector():
        while not stop.is_set():
            runs.append(sr.gc(grace=60))

    t = threading.Thread(target=collector)
    t.start()
    try:
        for round_ in range(6):
            for i in range(16):
                write_at(path, i * MiB, pattern((round_, i), MiB))
    finally:
        stop.set()
        t.join()
        pool.vdi_detach(v, host=host)
    assert len(runs) >= 2
    assert sum(r["young"] for r in runs) > 0   # it did see unreferenced, in-flight chunks
    data = read_vdi(pool, v, 0, 16 * MiB)
    assert data == b"".join(pattern((5, i), MiB) for i in range(16))
    # and once the writer is done, the superseded chunks do go
    sr.gc(grace=0)
    assert len(sr.chunks()) == 16


@pytest.mark.s3_servers
def test_gc_keeps_chunks_uploaded_before_their_manifest(pool, sr):
    """The deterministic interleaving: chunks PUT, collector runs, manifest PUT."""
    from drivers.s3 import chunks, layout, manifest
    v = pool.vdi_create(sr.ref, 2 * MiB, name_label="x")
    uuid = sr.location(v)
    client = sr.client()
    data = [pattern(("late", i), MiB) for i in range(2)]
    for d in data:
        chunks.upload(client, sr.bucket, layout.chunk(sr.root, chunks.digest(d)), d, "3")
    assert sr.gc(grace=60)["young"] == 2      # unreferenced but young: kept
    doc, etag = manifest.load(client, sr.bucket, layout.manifest(sr.root, uuid))
    doc["chunks"] = {"0": chunks.digest(data[0]), "1": chunks.digest(data[1])}
    manifest.store(client, sr.bucket, layout.manifest(sr.root, uuid), doc, etag)
    assert sr.gc(grace=0)["referenced"] == 2
    assert read_vdi(pool, v, 0, 2 * MiB) == b"".join(data)


@pytest.mark.s3_servers
def test_lease_single_writer_across_hosts(pool, sr):
    v = pool.vdi_create(sr.ref, 2 * MiB, name_label="x")
    uuid = sr.location(v)
    h0, h1 = pool.hosts[0], pool.hosts[1]
    pool.vdi_attach(v, host=h0)
    try:
        assert [k for k, _ in sr.keys("lease/")] == [sr.root + "lease/" + uuid]
        with pytest.raises(XapiError) as e:
            pool.vdi_attach(v, host=h1)
        assert backend_code(e.value) == "24"
        with pytest.raises(XapiError) as e:
            pool.vdi_destroy(v)
        assert backend_code(e.value) == "24"
    finally:
        pool.vdi_detach(v, host=h0)
        try:
            pool.vdi_detach(v, host=h1)
        except XapiError:
            pass
    assert sr.keys("lease/") == []
    write_vdi(pool, v, 0, b"h1" * 100, host=h1)   # free again: the other host may write
    assert read_vdi(pool, v, 0, 200) == b"h1" * 100


@pytest.mark.s3_servers
def test_scan_on_a_fresh_pool_restores_names_and_snapshot_tree(pool, sr):
    v = pool.vdi_create(sr.ref, 2 * MiB, name_label="vm disk", name_description="desc")
    s = pool.vdi_snapshot(v)
    vu, su = sr.location(v), sr.location(s)
    for pbd in pool.sr_record(sr.ref)["PBDs"]:
        pool.pbd_unplug(pbd)
    pool.sr_forget(sr.ref)
    ref = pool.sr_introduce(sr.uuid, "s3", name_label="again", shared=True)
    for host in pool.hosts:
        pool.pbd_plug(pool.pbd_create(host, ref, sr.dc))
    pool.sr_scan(ref)
    by_uuid = dict((pool.vdi_record(r)["uuid"], pool.vdi_record(r))
                   for r in pool.sr_record(ref)["VDIs"])
    assert set(by_uuid) == {vu, su}
    assert by_uuid[vu]["name_label"] == "vm disk"
    assert by_uuid[vu]["name_description"] == "desc"
    assert by_uuid[su]["is_a_snapshot"] is True
    assert pool.vdi_record(by_uuid[su]["snapshot_of"])["uuid"] == vu


def test_extents_and_changed_extents_come_from_manifests(pool, sr, tmp_path):
    from drivers.s3.driver import S3Driver
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="x")
    path = pool.vdi_attach(v)["params"]
    try:
        write_at(path, 0, pattern(6, 2 * MiB))
        write_at(path, 5 * MiB, pattern(7, MiB))
    finally:
        pool.vdi_detach(v)
    s = pool.vdi_snapshot(v)
    write_vdi(pool, v, 6 * MiB, pattern(8, MiB))

    drv = S3Driver(sr.uuid, sr.config(), driver_context(tmp_path, is_master=False))
    assert drv.extents(sr.location(v)) == [(0, 2 * MiB), (5 * MiB, 2 * MiB)]
    assert drv.changed_extents(sr.location(v), sr.location(s)) == [(6 * MiB, MiB)]


def test_sr_stats_report_stored_bytes_after_dedup(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="x")
    write_vdi(pool, v, 0, pattern(9, 4 * MiB))
    for _ in range(2):
        pool.vdi_clone(v)
    pool.sr_update(sr.ref)
    rec = pool.sr_record(sr.ref)
    stored = sum(s for _, s in sr.keys())
    assert int(rec["physical_utilisation"]) == stored
    assert 4 * MiB <= stored < 5 * MiB        # three VDIs, one copy of the data
