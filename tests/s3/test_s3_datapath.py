"""The NBD server (drivers/s3/nbd_server.py) under parallel requests, and its bounded
clean-chunk cache, on the real server: writers, readers and flushes at once read back
exactly; the cache under cache_dir stays within cache_size."""
import glob
import mmap
import os
import threading

import pytest

from s3_rig import CHUNK, MiB, discard_and_sync, pattern, read_vdi
from simulator.testkit import write_at
from simulator.errors import XapiError

K = 1024


def _clean_dirs(sr):
    return glob.glob(os.path.join(sr.dc["cache_dir"], "*", "*", "*", "clean"))


def _bytes_in(dirs):
    return sum(os.path.getsize(p) for d in dirs for p in glob.glob(os.path.join(d, "*")))


def _direct_read(path, offset, length):
    buf = mmap.mmap(-1, length)
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    try:
        assert os.preadv(fd, [buf], offset) == length
    finally:
        os.close(fd)
    return bytes(buf)


def test_parallel_writes_reads_and_flushes_read_back_exactly(pool, sr):
    size = 6 * CHUNK
    v = pool.vdi_create(sr.ref, size, name_label="busy")
    path = pool.vdi_attach(v)["params"]
    write_at(path, 0, pattern("base", size))       # partial writes then need S3's bytes
    # each writer owns a region: partial chunks, one across a chunk boundary, one whole
    regions = [(0, 64 * K), (CHUNK - 128 * K, 256 * K), (2 * CHUNK + 12 * K, 512 * K),
               (3 * CHUNK, CHUNK), (5 * CHUNK + 512 * K, 508 * K)]
    rounds = 12
    done, errors = threading.Event(), []

    def writer(n, offset, length):
        buf = mmap.mmap(-1, length)
        fd = os.open(path, os.O_RDWR | os.O_DIRECT)
        try:
            for r in range(rounds):
                buf[:] = pattern((n, r), length)
                os.pwrite(fd, buf, offset)
                if _direct_read(path, offset, length) != pattern((n, r), length):
                    errors.append("writer %d round %d did not read its own write" % (n, r))
        except Exception as e:          # noqa: BLE001 (reported below)
            errors.append(e)
        finally:
            os.close(fd)

    def flusher():
        fd = os.open(path, os.O_WRONLY)
        try:
            while not done.is_set():
                os.fsync(fd)            # flushes race the writes, chunk by chunk
        except Exception as e:          # noqa: BLE001
            errors.append(e)
        finally:
            os.close(fd)

    writers = [threading.Thread(target=writer, args=(n,) + r) for n, r in enumerate(regions)]
    f = threading.Thread(target=flusher)
    f.start()
    for t in writers:
        t.start()
    for t in writers:
        t.join(120)
    done.set()
    f.join(120)
    assert errors == []
    fd = os.open(path, os.O_WRONLY)
    os.fsync(fd)
    os.close(fd)
    pool.vdi_detach(v)
    expected = bytearray(pattern("base", size))
    for n, (offset, length) in enumerate(regions):
        expected[offset:offset + length] = pattern((n, rounds - 1), length)
    assert read_vdi(pool, v, 0, size) == bytes(expected)     # a new server: from S3 only
    assert not glob.glob(os.path.join(sr.dc["cache_dir"], "*", "*", "*", "flushing", "*"))


def test_clean_chunks_on_disk_stay_within_cache_size(pool, make_sr):
    sr = make_sr(cache_size=str(3 * CHUNK))
    v = pool.vdi_create(sr.ref, 8 * CHUNK, name_label="bounded")
    data = pattern("bounded", 8 * CHUNK)
    path = pool.vdi_attach(v)["params"]
    try:
        write_at(path, 0, data)                     # the flush keeps its chunks: 3 of them
        clean = _clean_dirs(sr)
        assert len(clean) == 1 and 0 < _bytes_in(clean) <= 3 * CHUNK
        write_at(path, 7 * CHUNK + 4 * K, b"x" * 4 * K)   # a partial write: base from cache
        for _ in range(2):
            assert _direct_read(path, 0, 8 * CHUNK)[:7 * CHUNK] == data[:7 * CHUNK]
            assert _bytes_in(clean) <= 3 * CHUNK
    finally:
        pool.vdi_detach(v)
    assert _clean_dirs(sr) == []                   # detach drops the VDI's cache
    tail = data[7 * CHUNK:7 * CHUNK + 4 * K] + b"x" * 4 * K + data[7 * CHUNK + 8 * K:]
    assert read_vdi(pool, v, 7 * CHUNK, CHUNK) == tail


def test_cache_size_zero_keeps_nothing_on_disk(pool, make_sr):
    sr = make_sr(cache_size="0")
    v = pool.vdi_create(sr.ref, 4 * CHUNK, name_label="uncached")
    data = pattern("uncached", 4 * CHUNK)
    path = pool.vdi_attach(v)["params"]
    try:
        write_at(path, 0, data)
        write_at(path, CHUNK + 4 * K, b"y" * 4 * K)
        assert _direct_read(path, 0, 4 * CHUNK)[2 * CHUNK:] == data[2 * CHUNK:]
        assert _bytes_in(_clean_dirs(sr)) == 0
    finally:
        pool.vdi_detach(v)
    assert read_vdi(pool, v, CHUNK, CHUNK) == \
        data[CHUNK:CHUNK + 4 * K] + b"y" * 4 * K + data[CHUNK + 8 * K:2 * CHUNK]


@pytest.mark.parametrize("value", ["-1", "lots"])
def test_bad_cache_size_is_115(pool, device_config, value):
    dc = dict(device_config, cache_size=value)
    with pytest.raises(XapiError) as e:
        pool.sr_create("s3", dc, name_label="bad", shared=True)
    assert e.value.code.endswith("_115") and "cache_size" in str(e.value)


def test_a_large_sequential_read_matches_through_the_read_ahead(pool, sr):
    size = 24 * MiB                                  # past the first windows of read-ahead
    v = pool.vdi_create(sr.ref, size + CHUNK, name_label="stream")
    data = os.urandom(size)
    path = pool.vdi_attach(v)["params"]
    try:
        write_at(path, 0, data)
    finally:
        pool.vdi_detach(v)
    path = pool.vdi_attach(v, writable=False)["params"]
    try:
        buf = mmap.mmap(-1, 4 * MiB)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            got = bytearray()
            for off in range(0, size + CHUNK, 4 * MiB):
                n = os.preadv(fd, [buf], off)
                got += buf[:n]
        finally:
            os.close(fd)
    finally:
        pool.vdi_detach(v)
    assert bytes(got[:size]) == data and got[size:] == bytes(CHUNK)   # the hole reads zeros


def test_discard_and_write_zeroes_reach_the_disk(pool, sr):
    """blkdiscard on the attached device (TRIM: the chunks it covers whole become holes)
    and blkdiscard -z (WRITE_ZEROES, partial chunks too) through the NBD server to the
    disk: the manifest loses the trimmed chunks, the bytes read back as zeros. The
    server answered EIO to both until the disk's zero() stopped being shadowed."""
    v = pool.vdi_create(sr.ref, 4 * CHUNK, name_label="trim")
    uuid = sr.location(v)
    full = pattern("full", 4 * CHUNK)
    path = pool.vdi_attach(v)["params"]
    try:
        write_at(path, 0, full)
        discard_and_sync(path, CHUNK, 2 * CHUNK)
        discard_and_sync(path, 3 * CHUNK, 64 * K, zeroes=True)
        assert sorted(sr.manifest(uuid)["chunks"]) == ["0", "3"]
    finally:
        pool.vdi_detach(v)
    assert read_vdi(pool, v, 0, 4 * CHUNK) == (
        full[:CHUNK] + bytes(2 * CHUNK) + bytes(64 * K) + full[3 * CHUNK + 64 * K:])
