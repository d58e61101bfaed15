"""Incremental exports: base + two deltas reproduce the final state exactly, a
delta refuses the wrong base, and a driver without changed_extents says so."""
import json
import os
import subprocess

import pytest

from export_rig import MiB, QEMU_FORMAT, apply, decompress, need_tools, qemu_img

SIZE = 32 * MiB

# libvhdi (not srkit) reads a VHD chain: argv = base, delta1, delta2, expected raw
LIBVHDI_CHAIN = """
import sys
try:
    import pyvhdi
except ImportError:
    sys.exit(3)
files = []
for path in sys.argv[1:-1]:
    f = pyvhdi.file()
    f.open(path)
    if files:
        assert f.get_parent_identifier() == files[-1].get_identifier(), path
        f.set_parent(files[-1])
    files.append(f)
top = files[-1]
data = top.read_buffer_at_offset(top.get_media_size(), 0)
sys.exit(0 if data == open(sys.argv[-1], "rb").read() else 1)
"""


def _chain(sr, tmp_path, fmt):
    """Snapshots S0, S1, S2 of one VDI with writes between them; a full export of
    S0 and deltas S0->S1, S1->S2 named <snapshot uuid>.<fmt>.zst."""
    vdi = sr.create(SIZE)
    image = bytes(SIZE)
    writes = [{0: os.urandom(MiB), 12 * MiB: os.urandom(11 * MiB)},
              {20 * MiB + 4096: b"\x01" * 8192, 28 * MiB: os.urandom(MiB)},
              {0: bytes(MiB), 29 * MiB - 100: os.urandom(200)}]   # zeroing is a change too
    snaps, files, states = [], [], []
    for step, pieces in enumerate(writes):
        sr.write(vdi, pieces)
        image = apply(image, pieces)
        snap = sr.snapshot(vdi)
        path = str(tmp_path / ("%s.%s.zst" % (snap, fmt)))
        args = ["vdi-export", "uuid=" + snap, "filename=" + path, "format=" + fmt]
        if snaps:
            args.append("base=" + snaps[-1])
        sr.xe(*args)
        snaps.append(snap)
        files.append(path)
        states.append(image)
    return vdi, snaps, files, states


@pytest.mark.parametrize("fmt", ["qcow2", "vhd"])
def test_base_and_two_deltas(rbd_sr, tmp_path, fmt):
    need_tools("zstd", "qemu-img")
    sr = rbd_sr
    _, snaps, files, states = _chain(sr, tmp_path, fmt)
    # the deltas carry what changed, not the disk
    assert os.path.getsize(files[1]) < os.path.getsize(files[0]) // 2
    assert os.path.getsize(files[2]) < os.path.getsize(files[0]) // 2

    plain = []
    for snap, path in zip(snaps, files):
        plain.append(decompress(path, str(tmp_path / ("%s.%s" % (snap, fmt)))))
    final = tmp_path / "final.raw"
    final.write_bytes(states[-1])
    if fmt == "qcow2":
        # qemu-img follows the backing-file references through the chain by itself
        info = json.loads(qemu_img("info", "--output=json", "--backing-chain",
                                   plain[2]).stdout)
        assert [os.path.basename(i["filename"]) for i in info] == \
            [os.path.basename(p) for p in reversed(plain)]
        for p in plain:
            check = qemu_img("check", p)
            assert check.returncode == 0, check.stdout
        cmp = qemu_img("compare", "-f", "qcow2", "-F", "raw", plain[2], str(final))
        assert cmp.returncode == 0, cmp.stdout
    else:
        # qemu-img reads the base but not a differencing VHD's parent; libvhdi follows it
        info = json.loads(qemu_img("info", "--output=json", "-f", "vpc", plain[0]).stdout)
        assert info["virtual-size"] == SIZE
        first = tmp_path / "first.raw"
        first.write_bytes(states[0])
        assert qemu_img("compare", "-f", QEMU_FORMAT[fmt], "-F", "raw", plain[0],
                        str(first)).returncode == 0
        check = subprocess.run(["/usr/bin/python3", "-c", LIBVHDI_CHAIN] + plain + [str(final)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if check.returncode == 3:
            pytest.skip("python3-libvhdi missing: run tests/rigs/export.sh install")
        assert check.returncode == 0, check.stdout

    new = sr.xe("vdi-import", "sr-uuid=" + sr.uuid, "filename=" + files[0]).stdout.decode().strip()
    assert sr.read(new) == states[0]
    sr.xe("vdi-import", "uuid=" + new, "filename=" + files[1])
    assert sr.read(new) == states[1]
    sr.xe("vdi-import", "uuid=" + new, "filename=" + files[2])
    assert sr.read(new) == states[2]


def test_delta_refuses_wrong_base(rbd_sr, tmp_path):
    need_tools("zstd")
    sr = rbd_sr
    _, snaps, files, states = _chain(sr, tmp_path, "qcow2")
    target = sr.xe("vdi-import", "sr-uuid=" + sr.uuid,
                   "filename=" + files[0]).stdout.decode().strip()
    proc = sr.xe("vdi-import", "uuid=" + target, "filename=" + files[2], check=False)
    assert proc.returncode != 0
    assert "base mismatch" in proc.stderr.decode() and snaps[1] in proc.stderr.decode()
    assert sr.read(target) == states[0]          # untouched
    before = sr.vdi_uuids()
    proc = sr.xe("vdi-import", "sr-uuid=" + sr.uuid, "filename=" + files[1], check=False)
    assert proc.returncode != 0 and "delta" in proc.stderr.decode()
    assert sr.vdi_uuids() == before


def test_raw_cannot_carry_a_delta(rbd_sr, tmp_path):
    sr = rbd_sr
    vdi = sr.create(4 * MiB)
    snap = sr.snapshot(vdi)
    out = str(tmp_path / "d.raw")
    proc = sr.xe("vdi-export", "uuid=" + vdi, "filename=" + out, "format=raw",
                 "base=" + snap, check=False)
    assert proc.returncode != 0 and "vhd or" in proc.stderr.decode()
    assert not os.path.exists(out)


def test_driver_without_changed_extents_refuses_base(local_sr, tmp_path):
    """Never a silent full export: `local` cannot say what changed."""
    sr = local_sr
    vdi = sr.create(4 * MiB)
    snap = sr.snapshot(vdi)
    out = str(tmp_path / "d.qcow2.zst")
    proc = sr.xe("vdi-export", "uuid=" + vdi, "filename=" + out, "format=qcow2",
                 "base=" + snap, check=False)
    assert proc.returncode != 0
    assert "changed_extents" in proc.stderr.decode(), proc.stderr
    assert not os.path.exists(out)
