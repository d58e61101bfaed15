"""Xen Orchestra's delta backup, end to end, with a real XenAPI client over HTTP and
NBD: enable CBT, snapshot, full read over NBD, data_destroy the previous snapshot,
VM writes, snapshot, list_changed_blocks, read only those blocks over NBD, rebuild
the disk from the full backup + the deltas; three generations with a resize between
two. The rebuilt disk must equal the VDI (sha256), and every written block must be in
the bitmap (a missed block is a silently corrupt backup)."""
import base64
import hashlib
import os
import shutil

import pytest

from backup_rig import GRANULE
from simulator.nbd_client import NbdClient

MiB = 1 << 20
BLOCK = 64 * 1024

# the NBD exports are qemu-nbd's (Debian qemu-utils, installed by tests/rigs/export.sh)
needs_qemu_nbd = pytest.mark.skipif(shutil.which("qemu-nbd") is None,
                                    reason="qemu-nbd missing: tests/rigs/export.sh install")


def changed_blocks(b64, size):
    raw = base64.b64decode(b64)
    nblocks = -(-size // BLOCK)
    assert len(raw) == -(-nblocks // 8), "one bit per 64 KiB block of vdi_to, whole bytes"
    return [i for i in range(nblocks) if raw[i // 8] & (0x80 >> (i % 8))]


def runs(blocks):
    """Contiguous runs of block numbers as (first, count)."""
    out = []
    for b in blocks:
        if out and out[-1][0] + out[-1][1] == b:
            out[-1][1] += 1
        else:
            out.append([b, 1])
    return out


def nbd_read(x, vdi, ranges):
    """[(offset, bytes)] of ``ranges`` read over NBD as a backup tool does."""
    [info] = x.VDI.get_nbd_info(vdi)
    with NbdClient(info["address"], info["port"], info["exportname"]) as c:
        return c.size, [(off, c.read(off, min(length, c.size - off))) for off, length in ranges]


def vm_write(pool, vdi, writes, model):
    """What the VM does between backups: writes through the VDI's dom0 device."""
    path = pool.vdi_attach(vdi)["params"]
    try:
        fd = os.open(path, os.O_RDWR)
        try:
            for off, data in writes:
                os.pwrite(fd, data, off)
                model[off:off + len(data)] = data
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        pool.vdi_detach(vdi)


def blocks_of(writes, granule=BLOCK):
    """The 64 KiB blocks of the granules (aligned, ``granule`` bytes) the writes touch."""
    per = granule // BLOCK
    return {g * per + i for off, data in writes
            for g in range(off // granule, (off + len(data) - 1) // granule + 1)
            for i in range(per)}


@needs_qemu_nbd
def test_three_generations_of_delta_backup(pool, sr, xenapi, driver):
    x = xenapi
    size = 8 * MiB
    vdi = pool.vdi_create(sr, size, name_label="vm-disk")
    model = bytearray(size)
    vm_write(pool, vdi, [(0, os.urandom(MiB)), (5 * MiB + 12345, os.urandom(300000))], model)
    x.VDI.enable_cbt(vdi)
    assert x.VDI.get_cbt_enabled(vdi)

    # generation 1: full backup of the first snapshot over NBD
    prev = x.VDI.snapshot(vdi, {})
    assert x.VDI.get_cbt_enabled(prev) and x.VDI.get_is_a_snapshot(prev)
    got_size, [(_, full)] = nbd_read(x, prev, [(0, size)])
    assert got_size == size and full == bytes(model)
    backup = bytearray(full)
    pool.nbd.wait_closed(prev, timeout=60)
    x.VDI.data_destroy(prev)
    assert x.VDI.get_type(prev) == "cbt_metadata"

    generations = [
        # unaligned, across a block edge, and one byte in the last block
        [(BLOCK - 3, b"abcdef"), (3 * MiB + 7, os.urandom(200000)), (size - 1, b"z")],
        # after a resize: writes past the old end, and in the middle again
        [(size + 3 * BLOCK + 5, os.urandom(100)), (2 * MiB, os.urandom(BLOCK))],
    ]
    for gen, writes in enumerate(generations, start=2):
        if gen == 3:
            old_size, size = size, size + 2 * MiB
            x.VDI.resize(vdi, str(size))
            model.extend(bytes(size - old_size))
        vm_write(pool, vdi, writes, model)
        snap = x.VDI.snapshot(vdi, {})
        changed = changed_blocks(x.VDI.list_changed_blocks(prev, snap), size)
        missed = blocks_of(writes) - set(changed)
        assert not missed, "generation %d: written blocks not reported: %s" % (gen, missed)
        if gen == 3:  # the grown part is always reported (vdi_from had no such blocks)
            assert set(range(old_size // BLOCK, size // BLOCK)) <= set(changed)
        # over-reporting stays within the backend's granularity
        allowed = blocks_of(writes, GRANULE[driver]) | set(range(len(backup) // BLOCK,
                                                                 size // BLOCK))
        assert set(changed) <= allowed and len(changed) < size // BLOCK
        if driver == "fakecbt":  # the fake's bitmap is an exact content diff
            assert set(changed) == blocks_of(writes) | set(
                range(len(backup) // BLOCK, size // BLOCK))
        ranges = [(first * BLOCK, count * BLOCK) for first, count in runs(changed)]
        got_size, pieces = nbd_read(x, snap, ranges)
        assert got_size == size
        read_bytes = sum(len(d) for _, d in pieces)
        assert read_bytes <= len(changed) * BLOCK
        backup.extend(bytes(size - len(backup)))  # the delta carries the new size
        for off, data in pieces:
            backup[off:off + len(data)] = data
        pool.nbd.wait_closed(snap, timeout=60)
        x.VDI.data_destroy(snap)  # it is the base of the next delta
        prev = snap
        assert hashlib.sha256(backup).digest() == hashlib.sha256(model).digest(), \
            "generation %d" % gen
    # the disk restored from full + deltas equals the VDI as the VM left it
    path = pool.vdi_attach(vdi, writable=False)["params"]
    try:
        with open(path, "rb") as f:
            live = f.read(size + 1)
    finally:
        pool.vdi_detach(vdi)
    assert hashlib.sha256(backup).hexdigest() == hashlib.sha256(live).hexdigest()
    assert pool.records("datapath") == [] and pool.nbd.active() == {}
