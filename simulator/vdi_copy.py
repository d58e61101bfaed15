"""``xe vdi-copy uuid=<vdi> sr-uuid=<sr>`` done the way xapi does it.

xapi creates a VDI of the same size on the target SR (vdi_create on its master),
plugs both into dom0 (the source read-only, the copy read-write: vdi_attach +
vdi_activate through each SR's driver), copies with sparse_dd and unplugs both;
the copy keeps the name, description, type and other-config. sparse_dd reads
everything and skips zero blocks; here the source driver's own ``extents`` (what
the backend knows is allocated: SEEK_DATA on a file, an RBD diff, …) bounds what is
read, when the driver has that primitive, and zero blocks are still skipped
inside those ranges: a freshly created VDI reads as zeros, so writing them again
would only allocate space.
"""
import os

from simulator.errors import XapiError

CHUNK = 4 * 1024 * 1024


def _driver_extents(pool, vdi, host):
    """[(offset, length)] the source's driver reports, or None (no such primitive)."""
    from framework import driver as contract
    from framework.driver import Context
    from framework.options import is_sr_master, validate
    from framework.registry import load
    rec = pool.vdi_record(vdi)
    sr = pool.sr_record(rec["SR"])
    try:
        cls = load(sr["type"])
    except Exception:
        return None
    if not contract.implements(cls, "extents"):
        return None

    class _Log(object):
        def info(self, msg):
            pool.log("vdi-copy: " + msg)
        error = info

        def hide(self, value):
            pass
    dc = pool.device_config_on(rec["SR"], host)
    config = validate(cls.options, dc, lambda uuid: pool.db.get(
        "secret", pool.db.by_uuid("secret", uuid))["value"])
    state = os.path.join(pool.host_dirs(host)["state"], sr["uuid"])
    driver = cls(sr["uuid"], config, Context(state, _Log(), is_sr_master(dc)))
    return driver.extents(rec["location"])


def _copy(src_path, dst_path, extents, size):
    """Copy ``extents`` (None: everything) of ``src_path``; return bytes written."""
    zero = bytes(CHUNK)
    written = 0
    src = os.open(src_path, os.O_RDONLY)
    dst = os.open(dst_path, os.O_WRONLY)
    try:
        for offset, length in (extents if extents is not None else [(0, size)]):
            end = min(offset + length, size)
            while offset < end:
                block = os.pread(src, min(CHUNK, end - offset), offset)
                if not block:
                    break
                if block != zero[:len(block)]:
                    os.pwrite(dst, block, offset)
                    written += len(block)
                offset += len(block)
        os.fsync(dst)
    finally:
        os.close(src)
        os.close(dst)
    return written


def vdi_copy(pool, vdi, sr, stats=None):
    """Copy VDI ``vdi`` into SR ``sr``; return the new VDI's ref.

    ``stats`` (a dict) receives ``extents`` (driver-reported or None) and ``written``."""
    rec = pool.vdi_record(vdi)
    host = pool.master
    size = int(rec["virtual_size"])
    new = pool.vdi_create(sr, size, name_label=rec["name_label"],
                          name_description=rec["name_description"], type=rec["type"],
                          other_config=dict(rec["other_config"]), sharable=rec["sharable"])
    attached = []
    try:
        src_path = pool.vdi_attach(vdi, host=host, writable=False)["params"]
        attached.append(vdi)
        dst_path = pool.vdi_attach(new, host=host, writable=True)["params"]
        attached.append(new)
        if not src_path or not dst_path:
            raise XapiError("VDI_COPY_FAILED", ["no dom0 device for the source or the copy"])
        extents = _driver_extents(pool, vdi, host)
        written = _copy(src_path, dst_path, extents, size)
        if stats is not None:
            stats.update(extents=extents, written=written)
    except BaseException:
        for ref in reversed(attached):
            try:
                pool.vdi_detach(ref, host=host)
            except Exception:
                pass
        pool.vdi_destroy(new)
        raise
    for ref in reversed(attached):
        pool.vdi_detach(ref, host=host)
    return new
