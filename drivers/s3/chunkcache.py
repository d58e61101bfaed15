"""The clean chunks of one attached VDI: in memory, on local disk, or fetched from S3.

A chunk is named by the SHA-256 of its plain bytes, so a cached copy never goes
stale; only the room it takes matters, and both tiers are bounded:

- memory: the chunks read most recently, decoded, up to ``memory_bytes`` (the
  read-ahead window plus a little). A streaming reader is served by a copy out of
  memory: no file is written or read for it;
- disk: ``<dir>/<sha256>``, up to ``disk_bytes`` (device-config ``cache_size``),
  least recently used out first. A chunk fetched from S3 goes to disk only when it
  is fetched a second time by this server (a single pass, a backup or a copy, does
  not churn the disk; a chunk read again and again does stay); the chunks a flush
  uploaded are kept there (``adopt``: their file is renamed, not copied).

One fetch per chunk at a time: a reader that wants a chunk being fetched (by the
read-ahead or another request) waits for that fetch. Thread-safe.
"""

import collections
import io
import os
import threading

WORKERS = 4            # read-ahead downloads in parallel
SEEN_MAX = 1 << 16     # digests remembered for the fetched-twice rule (~8 MiB), then forgotten


class CleanChunks(object):
    def __init__(self, fetch, directory, memory_bytes, disk_bytes, workers=WORKERS):
        """``fetch(digest)`` returns the verified plain bytes of a chunk from S3."""
        self.fetch = fetch
        self.dir = directory
        self.memory_limit = memory_bytes
        self.disk_limit = disk_bytes
        self.workers = workers
        self.lock = threading.Lock()
        self.memory = collections.OrderedDict()    # digest -> bytes, most recent last
        self.memory_bytes = 0
        self.ahead = set()                         # in memory, read ahead, not read yet
        self.disk = collections.OrderedDict()      # digest -> size of its file
        self.disk_bytes = 0
        self.pending = {}                          # digest -> Future of its fetch
        self.seen = set()
        self.pool = None
        self._load_disk()

    # --- the disk tier ----------------------------------------------------------------
    def _path(self, digest):
        return os.path.join(self.dir, digest)

    def _load_disk(self):
        """Files an earlier server of this attachment left are still valid: keep them,
        oldest first (a .tmp is a write that never finished)."""
        found = []
        for name in os.listdir(self.dir):
            path = self._path(name)
            if len(name) != 64:
                _unlink(path)
                continue
            st = os.stat(path)
            found.append((st.st_mtime, name, st.st_size))
        for _, name, size in sorted(found):
            self.disk[name] = size
            self.disk_bytes += size
        with self.lock:
            self._evict_disk()

    def _evict_disk(self):
        while self.disk and self.disk_bytes > self.disk_limit:
            digest, size = self.disk.popitem(last=False)
            self.disk_bytes -= size
            _unlink(self._path(digest))

    def _add_disk(self, digest, size):
        old = self.disk.pop(digest, None)
        if old is not None:
            self.disk_bytes -= old
        self.disk[digest] = size
        self.disk_bytes += size
        self._evict_disk()

    def _read_disk(self, digest):
        with self.lock:
            if digest not in self.disk:
                return None
            self.disk.move_to_end(digest)
        try:
            with io.open(self._path(digest), 'rb') as f:
                return f.read()
        except (IOError, OSError):    # evicted meanwhile
            return None

    def _admit(self, digest, data):
        """A chunk just fetched from S3 goes to disk if it was fetched before."""
        if self.disk_limit <= 0 or len(data) > self.disk_limit:
            return
        with self.lock:
            again = digest in self.seen
            if not again:
                if len(self.seen) >= SEEN_MAX:
                    self.seen.clear()
                self.seen.add(digest)
        if not again:
            return
        path = self._path(digest)
        tmp = '%s.%d.tmp' % (path, threading.get_ident())
        with io.open(tmp, 'wb') as f:
            f.write(data)
        os.rename(tmp, path)
        with self.lock:
            self._add_disk(digest, len(data))

    def adopt(self, digest, path):
        """Keep the file ``path`` (holding chunk ``digest``) on disk, by renaming it."""
        if self.disk_limit <= 0:
            _unlink(path)
            return
        size = os.stat(path).st_size
        with self.lock:
            os.rename(path, self._path(digest))
            self._add_disk(digest, size)

    # --- the memory tier and fetching -------------------------------------------------
    def _remember(self, digest, data, ahead):
        if digest in self.memory:
            self.memory.move_to_end(digest)
            return
        self.memory[digest] = data
        self.memory_bytes += len(data)
        if ahead:
            self.ahead.add(digest)
        while self.memory_bytes > self.memory_limit and len(self.memory) > 1:
            # the least recently used goes, but not a chunk read ahead and not read yet
            # (a stream's used chunks would push out those fetched for it)
            victim = next((d for d in self.memory if d not in self.ahead), None) or \
                next(iter(self.memory))
            self.ahead.discard(victim)
            self.memory_bytes -= len(self.memory.pop(victim))

    def _produce(self, digest, future, ahead=False):
        try:
            data = self._read_disk(digest)
            if data is None:
                data = self.fetch(digest)
                self._admit(digest, data)
        except BaseException as e:
            with self.lock:
                self.pending.pop(digest, None)
            future.set_exception(e)
            return
        with self.lock:
            self.pending.pop(digest, None)
            self._remember(digest, data, ahead)
        future.set_result(data)

    def get(self, digest, retry=True):
        """The plain bytes of chunk ``digest``."""
        from concurrent.futures import Future
        with self.lock:
            data = self.memory.get(digest)
            if data is not None:
                self.memory.move_to_end(digest)
                self.ahead.discard(digest)
                return data
            future = self.pending.get(digest)
            mine = future is None
            if mine:
                future = self.pending[digest] = Future()
        if mine:
            self._produce(digest, future)
            return future.result()
        try:
            data = future.result()
        except Exception:
            if not retry:
                raise
        else:
            with self.lock:
                self.ahead.discard(digest)
            return data
        return self.get(digest, False)   # that fetch (a read-ahead's) failed: one of ours

    def prefetch(self, digests):
        """Fetch these chunks in the background unless held or under way already."""
        from concurrent.futures import Future, ThreadPoolExecutor
        with self.lock:
            todo = []
            for digest in digests:
                if digest in self.memory or digest in self.pending:
                    continue
                future = self.pending[digest] = Future()
                todo.append((digest, future))
            if not todo:
                return
            if self.pool is None:
                self.pool = ThreadPoolExecutor(self.workers)
        for digest, future in todo:
            self.pool.submit(self._produce, digest, future, True)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown(wait=True)


def _unlink(path):
    try:
        os.unlink(path)
    except OSError:
        pass
