"""One VDI of an S3 SR as a disk: reads from its manifest's chunks, writes into a local
write-back chunk cache, flushes to S3. Served to a block device by nbd_server.py.

The cache lives under ``<cache_dir>/<sr>/<host>/<vdi uuid>/``:
  clean/<sha256>     chunks as read from S3 or flushed (chunkcache.py: bounded, with
                     the recently read chunks in memory)
  dirty/<index>      chunks written since the last flush (whole chunk, plain bytes)
  flushing/<index>   chunks a flush is uploading (a write meanwhile starts a new
                     dirty/<index> from this one)
Flush (and a FUA write) uploads every dirty chunk, then writes the manifest, then
re-checks the chunks: a crash loses only what was not flushed, as with a disk's
volatile cache. At open the dirty set of an earlier, dead server is dropped for
the same reason: the VDI reads back as of its last completed flush.

Requests run in parallel (the server's threads; the GIL is released while one waits
for S3 or a file), so one read waiting for a chunk does not hold up the others.
``self.lock`` guards the chunk state (dirty, flushing, the manifest in use) and
every rename of a chunk's file; one flush runs at a time. A sequential reader
grows a read-ahead window (doubling, up to READ_AHEAD bytes) whose chunks are
fetched by chunkcache's workers.
"""

import io
import json
import os
import shutil
import threading

from drivers.s3 import chunkcache, chunks, connection, layout, manifest
from framework import crash

UPLOADERS = 4                     # chunk PUTs of a flush in parallel
READ_AHEAD = 32 * 1024 * 1024     # largest read-ahead window, bytes
MEMORY = 8 * 1024 * 1024          # chunks kept in memory beyond the read-ahead window


def load_settings(path):
    """The settings datapath.attach wrote for this VDI (0600 JSON: it has credentials)."""
    with io.open(path) as f:
        return json.load(f)


class Disk(object):
    def __init__(self, s, readonly):
        self.s = s
        self.client = connection.make_client(s)
        self.bucket = s['bucket']
        self.key = layout.manifest(s['root'], s['uuid'])
        self.writable = s['writable'] and not readonly
        self.cache = s['cache']
        self.dirty_dir = os.path.join(self.cache, 'dirty')
        self.flushing_dir = os.path.join(self.cache, 'flushing')
        clean_dir = os.path.join(self.cache, 'clean')
        for d in (self.dirty_dir, self.flushing_dir):
            shutil.rmtree(d, ignore_errors=True)
        for d in (clean_dir, self.dirty_dir, self.flushing_dir):
            if not os.path.isdir(d):
                os.makedirs(d, 0o700)
        self.doc, self.etag = manifest.load(self.client, self.bucket, self.key)
        if self.doc is None:
            raise RuntimeError('no manifest %s' % self.key)
        self.cs = self.doc['chunk_size']
        self.zeros = memoryview(bytes(self.cs))   # not `zero`: that is the method
        self.lock = threading.Lock()
        self.flush_lock = threading.Lock()
        self.dirty = set()        # indexes with a dirty/<index> file
        self.flushing = set()     # indexes with a flushing/<index> file
        self.max_window = max(1, min(64, READ_AHEAD // self.cs))
        self.window = 0           # read-ahead chunks, grows while reads are sequential
        self.last = None          # last chunk index a read touched
        self.clean = chunkcache.CleanChunks(
            self._download, clean_dir,
            memory_bytes=(self.max_window + 2) * self.cs + MEMORY,
            disk_bytes=int(s.get('cache_size', connection.DEFAULT_CACHE_SIZE)))
        self.pool = None

    def size(self):
        return self.doc['size']

    def _download(self, digest):
        return chunks.download(self.client, self.bucket, layout.chunk(self.s['root'], digest),
                               digest)

    def _dirty_path(self, index):
        return os.path.join(self.dirty_dir, str(index))

    def _flushing_path(self, index):
        return os.path.join(self.flushing_dir, str(index))

    # --- reading ----------------------------------------------------------------------
    def _read_ahead(self, first, last, aligned):
        """Chunks first..last are being read: extend a sequential stream's window."""
        with self.lock:
            if self.last is not None and self.last - 1 <= first <= self.last + 1:
                if last > self.last:
                    self.window = min(self.max_window, max(2, 2 * self.window))
                    self.last = last
            else:      # a new stream: read ahead one chunk only if it starts on a chunk
                self.window = 1 if aligned else 0
                self.last = last
            chunk_map = self.doc['chunks']
            wanted = [chunk_map.get(str(i)) for i in range(last + 1, last + 1 + self.window)
                      if i not in self.dirty and i not in self.flushing]
        wanted = [d for d in wanted if d]
        if wanted:
            self.clean.prefetch(wanted)

    def pread(self, buf, offset):
        view = memoryview(buf)
        size = len(buf)
        self._read_ahead(offset // self.cs, (offset + size - 1) // self.cs,
                         offset % self.cs == 0)
        pos = 0
        while pos < size:
            index, within = divmod(offset + pos, self.cs)
            n = min(self.cs - within, size - pos)
            data = None
            with self.lock:
                if index in self.dirty or index in self.flushing:
                    path = self._dirty_path(index) if index in self.dirty else \
                        self._flushing_path(index)
                    with io.open(path, 'rb') as f:
                        f.seek(within)
                        data = f.read(n)
                else:
                    digest = self.doc['chunks'].get(str(index))
            if data is None and digest is None:
                data = self.zeros[within:within + n]
            elif data is None:
                data = memoryview(self.clean.get(digest))[within:within + n]
            view[pos:pos + len(data)] = data
            if len(data) < n:
                view[pos + len(data):pos + n] = self.zeros[:n - len(data)]
            pos += n

    # --- writing ----------------------------------------------------------------------
    def pwrite(self, buf, offset):
        view = memoryview(buf)
        pos = 0
        while pos < len(buf):
            index, within = divmod(offset + pos, self.cs)
            n = min(self.cs - within, len(buf) - pos)
            self._write_chunk(index, within, view[pos:pos + n])
            pos += n

    def zero(self, offset, length, partial=True):
        """Zeroes over [offset, offset+length) (NBD WRITE_ZEROES; TRIM with partial=False:
        only the chunks it covers whole, which then read back as zeros). A whole chunk
        becomes a sparse dirty chunk, which the flush stores as a hole; a hole stays one."""
        end = offset + length
        while offset < end:
            index, within = divmod(offset, self.cs)
            n = min(self.cs - within, end - offset)
            if n == self.cs:
                with self.lock:
                    if index in self.dirty or index in self.flushing or \
                            str(index) in self.doc['chunks']:
                        with io.open(self._dirty_path(index), 'wb') as f:
                            f.truncate(self.cs)
                        self.dirty.add(index)
            elif partial:
                self._write_chunk(index, within, self.zeros[:n])
            offset += n

    def _write_chunk(self, index, within, data):
        base = based_on = None
        while True:
            with self.lock:
                path = self._dirty_path(index)
                if index not in self.dirty:
                    digest = self.doc['chunks'].get(str(index))
                    if index in self.flushing:
                        shutil.copyfile(self._flushing_path(index), path)
                    elif digest is None or len(data) == self.cs:
                        with io.open(path, 'wb') as f:
                            f.truncate(self.cs)
                    elif based_on == digest:
                        with io.open(path, 'wb') as f:
                            f.write(base)
                    else:
                        based_on = digest
                        path = None
                    if path is not None:
                        self.dirty.add(index)
                if path is not None:
                    fd = os.open(path, os.O_WRONLY)
                    try:
                        os.pwrite(fd, data, within)
                    finally:
                        os.close(fd)
                    return
            # a partial write into a chunk that is only in S3: its bytes first, without
            # the lock (the fetch may take a while); then again, as it may have changed
            base = self.clean.get(based_on)

    def _executor(self):
        if self.pool is None:
            import concurrent.futures
            self.pool = concurrent.futures.ThreadPoolExecutor(UPLOADERS)
        return self.pool

    def _upload(self, index):
        """(index, digest or None for a hole) for one chunk being flushed."""
        with io.open(self._flushing_path(index), 'rb') as f:
            data = f.read()
        if chunks.is_zero(data):
            return index, None
        digest = chunks.digest(data)
        chunks.upload(self.client, self.bucket, layout.chunk(self.s['root'], digest), data,
                      self.s.get('compression') or '3')
        return index, digest

    def flush(self):
        with self.flush_lock:
            with self.lock:
                taken = sorted(self.dirty)
                for index in taken:
                    os.rename(self._dirty_path(index), self._flushing_path(index))
                self.flushing.update(taken)
                self.dirty.clear()
            if not taken:
                return
            try:
                done = self._flush(taken)
            except BaseException:
                self._unflush(taken)
                raise
            with self.lock:
                for index, digest in done:
                    self.flushing.discard(index)
                    if digest is None:
                        os.unlink(self._flushing_path(index))
                    else:
                        self.clean.adopt(digest, self._flushing_path(index))

    def _flush(self, taken):
        done = list(self._executor().map(self._upload, taken))
        crash.point('s3.flush.after-chunks')
        new_map = dict(self.doc['chunks'])
        for index, digest in done:
            if digest is None:
                new_map.pop(str(index), None)
            else:
                new_map[str(index)] = digest
        self._store_manifest(new_map)
        crash.point('s3.flush.after-manifest')
        # a collector that listed before our PUTs may have deleted a chunk that existed
        # already (same content) between its check and ours: put it back
        for index, digest in done:
            if digest is not None:
                key = layout.chunk(self.s['root'], digest)
                try:
                    self.client.head_object(Bucket=self.bucket, Key=key)
                except Exception as e:
                    if not connection.is_missing(e):
                        raise
                    with io.open(self._flushing_path(index), 'rb') as f:
                        chunks.upload(self.client, self.bucket, key, f.read(),
                                      self.s.get('compression') or '3')
        return done

    def _unflush(self, taken):
        """A failed flush: its chunks are dirty again (a chunk written since has a newer
        dirty file, copied from this one)."""
        with self.lock:
            for index in taken:
                self.flushing.discard(index)
                if index in self.dirty:
                    os.unlink(self._flushing_path(index))
                else:
                    os.rename(self._flushing_path(index), self._dirty_path(index))
                    self.dirty.add(index)

    def _store_manifest(self, new_map):
        for _ in range(manifest.RETRIES):
            doc = dict(self.doc)
            doc['chunks'] = new_map
            try:
                etag = manifest.store(self.client, self.bucket, self.key, doc, self.etag)
                with self.lock:
                    self.doc, self.etag = doc, etag
                return
            except manifest.Conflict:
                # metadata changed (vdi_update): keep it; the data changed (another host
                # took over after a fence, a revert): never overwrite it
                current, etag = manifest.load(self.client, self.bucket, self.key)
                if current is None or current['chunks'] != self.doc['chunks'] or \
                        current['size'] != self.doc['size']:
                    raise IOError('the data of %s was changed by someone else (fenced?); '
                                  'refusing to overwrite it' % self.key)
                with self.lock:
                    self.doc, self.etag = current, etag
        raise IOError('manifest %s keeps changing' % self.key)

    def close(self):
        try:
            if self.writable:
                self.flush()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
            self.clean.close()
