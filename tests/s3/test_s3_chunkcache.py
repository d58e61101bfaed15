"""drivers/s3/chunkcache.py on its own: the bounds and rules of the clean-chunk cache
(the datapath tests exercise it against the real server; here every fetch is counted)."""
import hashlib
import os
import threading
import time

import pytest

from drivers.s3.chunkcache import CleanChunks

K = 1024


def chunk(i, size=64 * K):
    data = (b"%08d" % i) * (size // 8)
    return hashlib.sha256(data).hexdigest(), data


class Store(object):
    """The S3 side: chunks by digest, every fetch logged, optionally slow or failing."""

    def __init__(self, n, size=64 * K):
        self.chunks = dict(chunk(i, size) for i in range(n))
        self.digests = [chunk(i, size)[0] for i in range(n)]
        self.fetched = []
        self.delay = 0
        self.fail = set()
        self.lock = threading.Lock()

    def fetch(self, digest):
        with self.lock:
            self.fetched.append(digest)
        time.sleep(self.delay)
        if digest in self.fail:
            self.fail.discard(digest)
            raise IOError("injected failure of %s" % digest)
        return self.chunks[digest]


def disk_bytes(path):
    return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path))


@pytest.fixture
def store():
    return Store(16)


def test_memory_holds_at_most_its_bound_and_serves_repeats(tmp_path, store):
    c = CleanChunks(store.fetch, str(tmp_path), memory_bytes=4 * 64 * K, disk_bytes=0)
    for d in store.digests[:4]:
        assert c.get(d) == store.chunks[d]
    for d in store.digests[:4]:
        c.get(d)
    assert len(store.fetched) == 4                      # repeats came from memory
    for d in store.digests[4:10]:
        c.get(d)
    assert c.memory_bytes <= 4 * 64 * K and len(c.memory) == 4
    assert os.listdir(str(tmp_path)) == []              # disk_bytes=0: never written


def test_disk_admits_a_chunk_fetched_twice_and_stays_within_its_bound(tmp_path, store):
    c = CleanChunks(store.fetch, str(tmp_path), memory_bytes=64 * K, disk_bytes=3 * 64 * K)
    for d in store.digests[:8]:                         # one streaming pass: nothing on disk
        c.get(d)
    assert os.listdir(str(tmp_path)) == []
    for d in store.digests[:8]:                         # fetched again: admitted, LRU-bounded
        c.get(d)
    assert sorted(os.listdir(str(tmp_path))) == sorted(store.digests[5:8])
    assert disk_bytes(str(tmp_path)) <= 3 * 64 * K
    before = len(store.fetched)
    assert c.get(store.digests[6]) == store.chunks[store.digests[6]]   # from disk
    assert len(store.fetched) == before
    # a new server on the same directory keeps what is there, within its own bound
    c2 = CleanChunks(store.fetch, str(tmp_path), memory_bytes=64 * K, disk_bytes=2 * 64 * K)
    assert len(os.listdir(str(tmp_path))) == 2 and c2.disk_bytes == 2 * 64 * K


def test_adopt_renames_a_flushed_file_and_evicts_the_oldest(tmp_path, store):
    clean = tmp_path / "clean"
    clean.mkdir()
    c = CleanChunks(store.fetch, str(clean), memory_bytes=64 * K, disk_bytes=2 * 64 * K)
    for d in store.digests[:3]:
        f = tmp_path / "flushing"
        f.write_bytes(store.chunks[d])
        c.adopt(d, str(f))
        assert not f.exists()
    assert sorted(os.listdir(str(clean))) == sorted(store.digests[1:3])
    assert c.get(store.digests[2]) == store.chunks[store.digests[2]]
    assert store.fetched == []
    (tmp_path / "none").mkdir()
    off = CleanChunks(store.fetch, str(tmp_path / "none"), 64 * K, 0)
    f = tmp_path / "flushing"
    f.write_bytes(b"x")
    off.adopt(store.digests[0], str(f))                 # no disk cache: the file just goes
    assert not f.exists() and os.listdir(str(tmp_path / "none")) == []


def test_read_ahead_is_not_pushed_out_by_the_chunks_its_reader_used(tmp_path, store):
    # room for the window and the chunk in use only: plain LRU would drop the next
    # chunk (fetched longest ago) rather than the one just used
    c = CleanChunks(store.fetch, str(tmp_path), memory_bytes=5 * 64 * K, disk_bytes=0)
    d = store.digests
    for i in range(12):                                 # a stream reading 4 chunks ahead
        c.prefetch(d[i + 1:i + 5])
        while c.pending:
            time.sleep(0.001)
        c.get(d[i])
        c.get(d[i])                                     # and each chunk more than once
    c.close()
    assert sorted(store.fetched) == sorted(d[:16])      # each fetched once, none again


def test_one_fetch_per_chunk_however_many_readers(tmp_path, store):
    store.delay = 0.2
    c = CleanChunks(store.fetch, str(tmp_path), memory_bytes=4 * 64 * K, disk_bytes=0)
    d = store.digests[0]
    c.prefetch([d])
    got = []
    threads = [threading.Thread(target=lambda: got.append(c.get(d))) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    assert got == [store.chunks[d]] * 5 and store.fetched == [d]


def test_a_failed_read_ahead_is_retried_by_the_reader(tmp_path, store):
    store.delay = 0.1
    d = store.digests[0]
    store.fail.add(d)
    c = CleanChunks(store.fetch, str(tmp_path), memory_bytes=4 * 64 * K, disk_bytes=0)
    c.prefetch([d])
    assert c.get(d) == store.chunks[d]
    c.close()
    assert store.fetched == [d, d] and c.pending == {}
    store.fail.add(store.digests[1])                    # a reader's own failure is its error
    with pytest.raises(IOError):
        c.get(store.digests[1])
    assert c.get(store.digests[1]) == store.chunks[store.digests[1]]
