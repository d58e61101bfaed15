"""nbdkit python plugin: serves one VDI of an S3 SR from its manifest.

Run by datapath.py as ``nbdkit -s python nbd_plugin.py config=<file.json>``.

A write-back chunk cache lives under ``<cache_dir>/<vdi uuid>/``:
  clean/<sha256>   chunks as read from S3 (content-addressed, so always valid)
  dirty/<index>    chunks written since the last flush (whole chunk, plain bytes)
Flush (and a FUA write) uploads every dirty chunk, then writes the manifest, then
re-checks the chunks: a crash loses only what was not flushed, as with a disk's
volatile cache. At open the dirty set of an earlier, dead server is dropped for
the same reason: the VDI reads back as of its last completed flush.

Requests are serialised (nbdkit's default for python plugins); uploads and
read-ahead downloads use a small thread pool.
"""

import io
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.realpath(__file__)))))

import nbdkit  # noqa: E402  (provided by nbdkit's python plugin)

from drivers.s3 import chunks, connection, layout, manifest  # noqa: E402
from framework import crash  # noqa: E402

API_VERSION = 2
WORKERS = 4
READ_AHEAD = 8

_settings = {}


def config(key, value):
    if key != 'config':
        raise RuntimeError('unknown parameter %s' % key)
    with io.open(value) as f:
        _settings.update(json.load(f))


def config_complete():
    if not _settings:
        raise RuntimeError('config=<file> is required')
    # detach waits for this process: the final flush happens in close()
    with io.open(_settings['pidfile'], 'w') as f:
        f.write('%d\n' % os.getpid())


def thread_model():
    return nbdkit.THREAD_MODEL_SERIALIZE_ALL_REQUESTS


class Disk(object):
    def __init__(self, s, readonly):
        self.s = s
        self.client = connection.make_client(s)
        self.bucket = s['bucket']
        self.key = layout.manifest(s['root'], s['uuid'])
        self.writable = s['writable'] and not readonly
        self.cache = s['cache']
        self.clean = os.path.join(self.cache, 'clean')
        self.dirty_dir = os.path.join(self.cache, 'dirty')
        shutil.rmtree(self.dirty_dir, ignore_errors=True)
        for d in (self.clean, self.dirty_dir):
            if not os.path.isdir(d):
                os.makedirs(d, 0o700)
        self.doc, self.etag = manifest.load(self.client, self.bucket, self.key)
        if self.doc is None:
            raise RuntimeError('no manifest %s' % self.key)
        self.cs = self.doc['chunk_size']
        self.dirty = set()
        self.pool = None
        self.pending = {}

    # --- reading ----------------------------------------------------------------------
    def _executor(self):
        if self.pool is None:
            import concurrent.futures
            self.pool = concurrent.futures.ThreadPoolExecutor(WORKERS)
        return self.pool

    def _fetch(self, digest):
        path = os.path.join(self.clean, digest)
        if not os.path.exists(path):
            data = chunks.download(self.client, self.bucket,
                                   layout.chunk(self.s['root'], digest), digest)
            tmp = '%s.%d.tmp' % (path, id(data))
            with io.open(tmp, 'wb') as f:
                f.write(data)
            os.rename(tmp, path)
        return path

    def _clean_path(self, index):
        digest = self.doc['chunks'].get(str(index))
        if digest is None:
            return None
        future = self.pending.pop(digest, None)
        if future is not None:
            return future.result()
        return self._fetch(digest)

    def _read_ahead(self, index):
        for i in range(index + 1, index + 1 + READ_AHEAD):
            digest = self.doc['chunks'].get(str(i))
            if digest and i not in self.dirty and digest not in self.pending and \
                    not os.path.exists(os.path.join(self.clean, digest)):
                self.pending[digest] = self._executor().submit(self._fetch, digest)

    def _dirty_path(self, index):
        return os.path.join(self.dirty_dir, str(index))

    def pread(self, buf, offset):
        view = memoryview(buf)
        pos = 0
        while pos < len(buf):
            index, within = divmod(offset + pos, self.cs)
            n = min(self.cs - within, len(buf) - pos)
            path = self._dirty_path(index) if index in self.dirty else self._clean_path(index)
            if path is None:
                view[pos:pos + n] = bytes(n)
            else:
                with io.open(path, 'rb') as f:
                    f.seek(within)
                    data = f.read(n)
                view[pos:pos + len(data)] = data
                if len(data) < n:
                    view[pos + len(data):pos + n] = bytes(n - len(data))
            if within == 0 and index not in self.dirty:   # a sequential reader enters
                self._read_ahead(index)
            pos += n

    # --- writing ----------------------------------------------------------------------
    def pwrite(self, buf, offset):
        pos = 0
        while pos < len(buf):
            index, within = divmod(offset + pos, self.cs)
            n = min(self.cs - within, len(buf) - pos)
            path = self._dirty_path(index)
            if index not in self.dirty:
                base = None if n == self.cs else self._clean_path(index)
                if base is not None:
                    shutil.copyfile(base, path)
                else:
                    with io.open(path, 'wb') as f:
                        f.truncate(self.cs)
                self.dirty.add(index)
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, buf[pos:pos + n], within)
            finally:
                os.close(fd)
            pos += n

    def _upload(self, index):
        """(index, digest or None for a hole, path) for one dirty chunk."""
        path = self._dirty_path(index)
        with io.open(path, 'rb') as f:
            data = f.read()
        if chunks.is_zero(data):
            return index, None, path
        digest = chunks.digest(data)
        chunks.upload(self.client, self.bucket, layout.chunk(self.s['root'], digest), data,
                      self.s.get('compression') or '3')
        return index, digest, path

    def flush(self):
        if not self.dirty:
            return
        done = list(self._executor().map(self._upload, sorted(self.dirty)))
        crash.point('s3.flush.after-chunks')
        new_map = dict(self.doc['chunks'])
        for index, digest, _ in done:
            if digest is None:
                new_map.pop(str(index), None)
            else:
                new_map[str(index)] = digest
        self._store_manifest(new_map)
        crash.point('s3.flush.after-manifest')
        # a collector that listed before our PUTs may have deleted a chunk that existed
        # already (same content) between its check and ours: put it back
        for index, digest, path in done:
            if digest is not None:
                key = layout.chunk(self.s['root'], digest)
                try:
                    self.client.head_object(Bucket=self.bucket, Key=key)
                except Exception as e:
                    if not connection.is_missing(e):
                        raise
                    with io.open(path, 'rb') as f:
                        chunks.upload(self.client, self.bucket, key, f.read(),
                                      self.s.get('compression') or '3')
        for index, digest, path in done:
            if digest is None:
                os.unlink(path)
            else:
                os.rename(path, os.path.join(self.clean, digest))
        self.dirty.clear()

    def _store_manifest(self, new_map):
        for _ in range(manifest.RETRIES):
            doc = dict(self.doc)
            doc['chunks'] = new_map
            try:
                self.etag = manifest.store(self.client, self.bucket, self.key, doc, self.etag)
                self.doc = doc
                return
            except manifest.Conflict:
                # metadata changed (vdi_update): keep it; the data changed (another host
                # took over after a fence, a revert): never overwrite it
                current, etag = manifest.load(self.client, self.bucket, self.key)
                if current is None or current['chunks'] != self.doc['chunks'] or \
                        current['size'] != self.doc['size']:
                    raise IOError('the data of %s was changed by someone else (fenced?); '
                                  'refusing to overwrite it' % self.key)
                self.doc, self.etag = current, etag
        raise IOError('manifest %s keeps changing' % self.key)

    def close(self):
        try:
            if self.writable:
                self.flush()
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)


def open(readonly):
    return Disk(_settings, readonly)


def get_size(h):
    return h.doc['size']


def can_write(h):
    return h.writable


def can_flush(h):
    return True


def can_fua(h):
    return nbdkit.FUA_NATIVE


def can_multi_conn(h):
    return False


def pread(h, buf, offset, flags):
    h.pread(buf, offset)


def pwrite(h, buf, offset, flags):
    h.pwrite(buf, offset)
    if flags & nbdkit.FLAG_FUA:
        h.flush()


def flush(h, flags):
    h.flush()


def close(h):
    h.close()
