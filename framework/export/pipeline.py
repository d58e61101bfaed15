"""Export and import of one VDI, written once on the driver primitives.

The VDI is attached (and activated, where the driver has ``activate``) on this
host for the transfer unless it already is, under the framework's VDI lock.
Export reads only what ``extents`` (or, for a delta, ``changed_extents``)
names; a driver without ``extents`` is read whole.
"""

import os
import time

from framework import driver as contract
# the attach bookkeeping a VDI shares with xapi's own vdi_attach on this host
# the datapath bookkeeping xapi's own attach uses, so an export borrows or leaves it as it was
from framework.datapath import attach_location, detach_location
from framework.markers import Marker as _Marker
from framework.errors import SRError
from framework.locks import vdi_lock
from framework.export import compress, container
from framework.export.device import Batcher, Device, buffer
from framework.export.instream import ZeroRun
from framework.export.progress import Progress

FORMATS = ('raw', 'vhd', 'qcow2')   # modules of framework.export, imported when used


def format_module(name):
    """The writer and reader module of image format ``name``."""
    if name not in FORMATS:
        raise SRError('BadRequest', 'format %r is not one of %s' % (name, ', '.join(FORMATS)))
    return __import__('framework.export.' + name, fromlist=[name])
# set on a VDI by every import: the VDI (usually a snapshot) whose content it now
# holds, so a delta is applied only on top of its own base
CONTENT_OF = 'srkit_content_of'
PIECE = 4 * 1024 * 1024
_ZERO = bytes(PIECE)


def _nonzero(offset, data, unit=1024 * 1024):
    """(offset, view) of the parts of ``data`` (at disk ``offset``) that are not all
    zero, in disk-aligned ``unit``s. bytes.startswith compares with memcmp and
    copies nothing (== with a slice would copy; with a memoryview it crawls)."""
    view = memoryview(data)
    end = len(view)
    at = 0
    start = None
    while at < end:
        step = min(unit - (offset + at) % unit, end - at)
        if _ZERO.startswith(view[at:at + step]):
            if start is not None:
                yield offset + start, view[start:at]
                start = None
        elif start is None:
            start = at
        at += step
    if start is not None:
        yield offset + start, view[start:end]


def _write_zeros(out, offset, length):
    """Write ``length`` zeros at ``offset`` through ``out`` (a Batcher)."""
    while length > 0:
        step = min(length, len(_ZERO))
        out.write(offset, memoryview(_ZERO)[:step])
        offset += step
        length -= step


def align(extents, unit, size):
    """Sorted, merged [(offset, length)] covering ``extents`` in whole ``unit``s."""
    spans = []
    for offset, length in sorted(extents):
        if length <= 0:
            continue
        start = offset // unit * unit
        end = min((offset + length + unit - 1) // unit * unit, size)
        if spans and start <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], end)
        elif start < end:
            spans.append([start, end])
    return [(s, e - s) for s, e in spans]


def subtract(extents, taken):
    """The parts of ``extents`` not covered by the sorted, disjoint ``taken``."""
    out = []
    for offset, length in sorted(extents):
        pos, end = offset, offset + length
        for t_off, t_len in taken:
            if t_off + t_len <= pos or t_off >= end:
                continue
            if t_off > pos:
                out.append((pos, t_off - pos))
            pos = max(pos, t_off + t_len)
        if pos < end:
            out.append((pos, end - pos))
    return out


class _Attached(object):
    """The VDI's device on this host for the duration of a transfer."""

    def __init__(self, inv, location, writable):
        self.inv, self.location, self.writable = inv, location, writable
        self.attached = self.activated = False
        self.seconds = {}     # attach, detach: for the log line

    def __enter__(self):
        start = time.time()
        try:
            return self._enter()
        finally:
            self.seconds['attach'] = time.time() - start

    def _enter(self):
        inv, location = self.inv, self.location
        known = _Marker(inv, location, 'attach').read()
        if known and os.path.exists(known):
            path = known   # a VM or an admin has it plugged: borrow it, leave it so
        else:
            path = attach_location(inv, location, self.writable)['params']
            self.attached = True
        if contract.implements(inv.driver_cls, 'activate'):
            marker = _Marker(inv, location, 'active')
            if marker.read() is None:
                inv.driver.activate(location, self.writable)
                marker.write('rw' if self.writable else 'ro')
                self.activated = True
        return path

    def __exit__(self, *exc):
        inv, location = self.inv, self.location
        start = time.time()
        try:
            if self.activated:
                inv.driver.deactivate(location)
                _Marker(inv, location, 'active').clear()
        finally:
            if self.attached:
                detach_location(inv, location)
            self.seconds['detach'] = time.time() - start
        return False

    def timings(self, **more):
        more.update(self.seconds)
        return ', '.join('%s %.3f s' % kv for kv in sorted(more.items()))


def _read_ahead(dev, runs, digest, depth=4):
    """(offset, data) of ``runs``, read and hashed by a thread while the caller
    writes the previous pieces out (pread and sha256 release the GIL). ``data`` is
    a view of one of a few reused buffers: the caller is done with it when it asks
    for the next piece."""
    import queue
    import threading
    pieces = queue.Queue(depth)
    free = queue.Queue()
    buffers = [buffer(PIECE) for _ in range(depth + 2)]
    for buf in buffers:
        free.put(buf)
    stop = []

    def work():
        try:
            for offset, length in runs:
                end = offset + length
                while offset < end and not stop:
                    buf = free.get()
                    try:
                        data = dev.read_into(offset, memoryview(buf)[:min(PIECE, end - offset)])
                    except EOFError as e:
                        raise SRError('VDIUnavailable', str(e))
                    digest.update(offset, data)
                    pieces.put((offset, data, buf))
                    offset += len(data)
            pieces.put(None)
        except BaseException as e:
            pieces.put(e)
    thread = threading.Thread(target=work, name='srkit-export-read')
    thread.daemon = True
    thread.start()
    try:
        while True:
            item = pieces.get()
            if item is None:
                break
            if isinstance(item, BaseException):
                raise item
            offset, data, buf = item
            yield offset, data
            free.put(buf)
    finally:
        stop.append(True)
        while thread.is_alive():   # unblock a reader waiting on a full queue
            free.put(buffers[0])
            try:
                pieces.get(timeout=0.1)
            except queue.Empty:
                pass
        thread.join()
        for buf in buffers:
            try:
                buf.close()
            except BufferError:   # still viewed by a piece that never came back
                pass


def export_vdi(inv, location, out_fd, fmt, compression='zstd', base=None, sidecar=None,
               status=None):
    """Write VDI ``location`` to ``out_fd``; ``base`` = (uuid, location) of a snapshot
    for a delta. Returns the header and trailer records."""
    module = format_module(fmt)
    kind, level = compress.parse(compression)
    start = time.time()
    driver = inv.driver
    with vdi_lock(inv.vdi_uuid or location):
        volume = inv.volume_at(location)
        size = volume.virtual_size
        parent = None
        if base:
            if not module.Writer.supports_delta:
                raise SRError('BadRequest', 'a %s export cannot carry a delta: use vhd or '
                              'qcow2 with base=' % fmt)
            if not contract.implements(inv.driver_cls, 'changed_extents'):
                raise SRError('Unimplemented', '%s SRs cannot list what changed since a '
                              'snapshot (no changed_extents): export without base= for a '
                              'full copy' % inv.driver_cls.name)
            inv.volume_at(base[1])
            extents = driver.changed_extents(location, base[1])
            parent = {'uuid': base[0], 'name': '%s.%s' % (base[0], fmt)}
        elif contract.implements(inv.driver_cls, 'extents'):
            extents = driver.extents(location)
        else:
            extents = [(0, size)]
        # in the format's own unit: a 4 KiB change of a qcow2 delta reads one 64 KiB cluster
        runs = align(extents, module.UNIT, size)
        data_bytes = sum(length for _, length in runs)
        head = container.header(fmt, size, inv.vdi_uuid or location, base[0] if base else '',
                                'zstd' if kind == 'zstd' else 'none',
                                {'data_bytes': data_bytes, 'digest_chunk': container.CHUNK})
        digest = container.Digest()
        bar = Progress(data_bytes, 'export %s' % (inv.vdi_uuid or location)[:8], status=status)
        attached = _Attached(inv, location, False)
        with attached as path:
            dev = Device(path, writable=False)
            try:
                sink = compress.compressor(out_fd, kind, level)
                if kind == 'zstd':
                    sink.metadata(container.payload(container.HEADER_TAG, head))
                writer = module.Writer(sink, size, runs, parent, unique_id=inv.vdi_uuid or '')
                for offset, data in _read_ahead(dev, runs, digest):
                    writer.data(offset, data)
                    bar.add(len(data))
                writer.close()
                trailer = {'digest': digest.hexdigest(size), 'data_bytes': data_bytes,
                           'chunks': digest.chunks}
                if kind == 'zstd':
                    sink.metadata(container.payload(container.TRAILER_TAG, trailer))
                sink.close()
            finally:
                dev.close()
        if kind != 'zstd' and sidecar:
            import json
            with open(sidecar, 'w') as f:
                json.dump({'header': head, 'trailer': trailer}, f, sort_keys=True)
        bar.finish()
        inv.log.info('export %s (%s, %s via %s, base %s): %d bytes of data in %.3f s (%s), '
                     'digest %s' % (location, fmt, compression, compress.backend()
                                    if kind == 'zstd' else '-', base[0] if base else '-',
                                    data_bytes, time.time() - start, attached.timings(),
                                    trailer['digest']))
        return head, trailer


def detect(src, fmt=None):
    """The reader module for a stream: srkit's header, else the image's magic, else raw."""
    named = fmt or (src.header or {}).get('format')
    if named:
        return format_module(named)
    start = src.read(8)
    src.unread(start)
    if start[:4] == b'QFI\xfb':
        return format_module('qcow2')
    if start == b'conectix':
        return format_module('vhd')
    return format_module('raw')


def open_reader(src, fmt=None):
    module = detect(src, fmt)
    return module.Reader(src, (src.header or {}).get('virtual_size'))


def import_vdi(inv, location, src, reader, fresh, status=None):
    """Write ``reader``'s image into VDI ``location``; ``fresh``: the VDI was just
    created (all zero), so zero data needs no writing. Verifies the srkit trailer."""
    driver = inv.driver
    head = src.header
    start = time.time()
    with vdi_lock(inv.vdi_uuid or location):
        volume = inv.volume_at(location)
        size = reader.virtual_size
        if size is not None and size > volume.virtual_size:
            raise SRError('VDISize', 'the stream holds a %d-byte disk; VDI %s has %d bytes'
                          % (size, location, volume.virtual_size))
        delta = reader.is_delta or bool(head and head.get('base'))
        if delta:
            if fresh:
                raise SRError('BadRequest', 'this stream is a delta on top of %s: import it '
                              'with uuid= of the VDI that holds that base'
                              % ((head or {}).get('base') or reader.parent))
            if not head:
                raise SRError('VDIUnavailable', 'a delta without srkit metadata cannot be '
                              'checked against its base; refusing it')
            holds = volume.meta.get(CONTENT_OF, '')
            if holds != head['base']:
                raise SRError('VDIUnavailable', 'base mismatch: this delta applies on top of '
                              '%s, but VDI %s holds %s' % (head['base'], location,
                                                           holds or 'no imported content'))
        clear = []
        if not fresh and not delta:
            clear = driver.extents(location) if contract.implements(
                inv.driver_cls, 'extents') else [(0, volume.virtual_size)]
        # zeros need no writing on a new VDI (it is all zero) nor on a whole-disk import
        # (what the old content had there is cleared below); a delta must write them
        skip_zeros = fresh or not delta
        total = (head or {}).get('data_bytes') or size or 0
        bar = Progress(total, 'import %s' % (inv.vdi_uuid or location)[:8], status=status)
        digest = container.Digest()
        written = []
        attached = _Attached(inv, location, True)
        with attached as path:
            dev = Device(path, writable=True)
            out = Batcher(dev)
            verified = None      # when the content was written and checked
            try:
                for offset, data in reader.blocks():
                    n = len(data)
                    if offset + n > volume.virtual_size:
                        raise compress.corrupt('data at %d beyond the disk' % offset)
                    if isinstance(data, ZeroRun):  # taken out of the stream undecompressed
                        if not skip_zeros:
                            _write_zeros(out, offset, n)
                        bar.add(n)
                        continue
                    # zero parts add nothing to the digest: it only needs what is written
                    for at, piece in _nonzero(offset, data) if skip_zeros else [(offset, data)]:
                        digest.update(at, piece)
                        out.write(at, piece)
                        if clear:
                            if written and written[-1][0] + written[-1][1] == at:
                                written[-1] = (written[-1][0], written[-1][1] + len(piece))
                            else:
                                written.append((at, len(piece)))
                    bar.add(n)
                src.finish()
                out.flush()
                if head is not None:
                    trailer = src.trailer
                    if trailer is None:
                        raise compress.corrupt('its digest trailer is missing')
                    got = digest.hexdigest(size or volume.virtual_size)
                    if got != trailer.get('digest'):
                        raise compress.corrupt('the digest of the disk content is %s, the '
                                               'export recorded %s' % (got, trailer.get('digest')))
                if clear:
                    written.sort()
                    for offset, length in subtract(clear, written):
                        dev.zero(offset, length)
                verified = time.time()
            finally:
                out.close()
                dev.close(sync=verified is not None)
            fsync = time.time() - verified
        bar.finish()
        source = (head or {}).get('source', '')
        meta = dict(volume.meta)
        if meta.get(CONTENT_OF, '') != source:
            meta[CONTENT_OF] = source
            driver.set_meta(location, meta)
        inv.log.info('import into %s (%s%s): ok in %.3f s (%s)'
                     % (location, reader.__class__.__module__.split('.')[-1],
                        ', delta' if delta else '', time.time() - start,
                        attached.timings(fsync=fsync)))
