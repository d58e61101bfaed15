"""The CBT calls as xapi makes them (smapiv1.md §2.3; xapi_vdi.ml), for the conformance
checks and the per-driver CBT tests: each runs the driver command through the pool,
then changes the database as xapi does after a success (cbt_enabled for enable and
disable, type cbt_metadata after data_destroy). The bitmap helpers decode the reply.
"""
import base64

BLOCK = 64 * 1024


def _call(pool, command, vdi, args=()):
    return pool.call(command, vdi=vdi, args=list(args))


def enable(pool, vdi):
    _call(pool, "vdi_enable_cbt", vdi)
    pool.db.update("VDI", vdi, cbt_enabled=True)


def disable(pool, vdi):
    _call(pool, "vdi_disable_cbt", vdi)
    pool.db.update("VDI", vdi, cbt_enabled=False)


def data_destroy(pool, vdi):
    _call(pool, "vdi_data_destroy", vdi)
    pool.db.update("VDI", vdi, type="cbt_metadata")


def snapshot(pool, vdi):
    """VDI.snapshot: xapi copies cbt_enabled onto the snapshot (Xapi_vdi.snapshot)."""
    snap = pool.vdi_snapshot(vdi)
    pool.db.update("VDI", snap, cbt_enabled=bool(pool.vdi_record(vdi)["cbt_enabled"]))
    return snap


def changed_blocks(pool, vdi_from, vdi_to):
    """The raw reply: base64 text."""
    return _call(pool, "vdi_list_changed_blocks", vdi_from, [vdi_to])


def block_set(text):
    """{block index} of the set bits of a base64 bitmap (MSB first)."""
    raw = base64.b64decode(text)
    return set(i * 8 + b for i, byte in enumerate(raw) for b in range(8)
               if byte & (0x80 >> b))


def blocks_of(offset, length):
    """The 64 KiB blocks a write of ``length`` bytes at ``offset`` touches."""
    return set(range(offset // BLOCK, (offset + length - 1) // BLOCK + 1))


def expected_len(size):
    return ((size + BLOCK - 1) // BLOCK + 7) // 8


def check_bitmap(text, size, written, granularity, may_differ=()):
    """The bitmap covers ``size`` exactly, sets every block of ``written`` [(offset,
    length)] (never under-report) and nothing farther than ``granularity`` bytes
    (the backend's unit) from them or from ``may_differ`` (ranges the backend may see
    as rewritten with the same bytes, e.g. by a revert): a bounded over-report.
    Returns the set blocks."""
    raw = base64.b64decode(text)
    assert len(raw) == expected_len(size), \
        "bitmap of %d bytes for a %d-byte VDI (want %d)" % (len(raw), size, expected_len(size))
    got = block_set(text)
    nbits = (size + BLOCK - 1) // BLOCK
    assert all(i < nbits for i in got), "bits set past the VDI's end: %s" % sorted(
        i for i in got if i >= nbits)
    need = set()
    allowed = set()
    for offset, length in list(written) + list(may_differ):
        if (offset, length) in written:
            need |= blocks_of(offset, length)
        lo = (offset // granularity) * granularity
        hi = -(-(offset + length) // granularity) * granularity
        allowed |= blocks_of(lo, hi - lo)
    missing = need - got
    assert not missing, "changed blocks not reported (backup corruption): %s" % sorted(missing)
    extra = got - allowed
    assert not extra, "blocks reported beyond the %d-byte granularity of the writes: %s" \
        % (granularity, sorted(extra)[:20])
    return got


def check_exact(text, size, written):
    """The bitmap sets exactly the 64 KiB blocks of ``written`` (a backend whose unit is
    no coarser than the bitmap's block: rbd extents, small zvol blocks)."""
    got = check_bitmap(text, size, written, BLOCK)
    want = set()
    for offset, length in written:
        want |= blocks_of(offset, length)
    assert got == want, "bitmap sets %s, the writes were %s" % (sorted(got), sorted(want))
    return got


def refused_as_disk(pool, vdi):
    """A cbt_metadata VDI is no disk: xapi refuses its attach first
    (VDI_INCOMPATIBLE_TYPE), the driver asked directly refuses it too (66), and
    nothing is left plugged."""
    assert _fault_of(lambda: pool.vdi_attach(vdi, writable=False)) == "VDI_INCOMPATIBLE_TYPE"
    assert _fault_of(lambda: pool.call("vdi_attach", vdi=vdi, args=["false"])) == \
        "SR_BACKEND_FAILURE_66"
    assert not pool.find("datapath", VDI=vdi)


def _fault_of(call):
    from simulator.errors import XapiError
    try:
        call()
    except XapiError as e:
        return e.code
    raise AssertionError("the call was not refused")
