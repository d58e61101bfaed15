"""Corrupted and truncated streams are refused, and an import that created its
VDI removes it again."""
import os

import pytest

from export_rig import MiB, need_tools, pattern

SIZE = 16 * MiB


def _export(sr, tmp_path, fmt, compression, env=None):
    vdi = sr.create(SIZE)
    sr.write(vdi, pattern("sparse", SIZE))
    path = str(tmp_path / ("disk.%s.%s" % (fmt, compression.split(":")[0])))
    sr.xe("vdi-export", "uuid=" + vdi, "filename=" + path, "format=" + fmt,
          "compression=" + compression, env=env)
    return vdi, path


def _refused(sr, path, words, env=None):
    before = sr.vdi_uuids()
    files = sorted(os.listdir(sr.root))
    proc = sr.xe("vdi-import", "sr-uuid=" + sr.uuid, "filename=" + path, check=False, env=env)
    assert proc.returncode != 0
    assert any(w in proc.stderr.decode() for w in words), proc.stderr
    assert proc.stdout == b""
    assert sr.vdi_uuids() == before                  # xapi's view: no new VDI
    assert sorted(os.listdir(sr.root)) == files      # the backend's view: nothing left
    return proc.stderr.decode()


def _flip(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))


@pytest.mark.parametrize("zstd", ["module", "cli"])
@pytest.mark.parametrize("fmt", ["raw", "vhd", "qcow2"])
def test_flipped_byte_refused(local_sr, tmp_path, fmt, zstd):
    need_tools("zstd")
    env = {"SRKIT_ZSTD": zstd}
    _, path = _export(local_sr, tmp_path, fmt, "zstd", env)
    _flip(path, os.path.getsize(path) // 2)
    _refused(local_sr, path, ["corrupt"], env)


@pytest.mark.parametrize("zstd", ["module", "cli"])
@pytest.mark.parametrize("cut", ["half", "trailer"])
def test_truncated_refused(local_sr, tmp_path, cut, zstd):
    need_tools("zstd")
    env = {"SRKIT_ZSTD": zstd}
    _, path = _export(local_sr, tmp_path, "qcow2", "zstd:1", env)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        data = f.read()
    keep = size // 2 if cut == "half" else data.rfind(b"SRKIT1T") - 8
    with open(path, "wb") as f:
        f.write(data[:keep])
    _refused(local_sr, path, ["truncated", "corrupt"], env)


def test_uncompressed_corruption_caught_by_digest(local_sr, tmp_path):
    """Without zstd frames the digest in the sidecar is what catches a bad byte."""
    _, path = _export(local_sr, tmp_path, "qcow2", "none")
    _flip(path, os.path.getsize(path) - 100 * 1024)   # inside the last data cluster
    message = _refused(local_sr, path, ["digest"])
    assert "corrupt" in message


def test_truncated_uncompressed_vhd_refused(local_sr, tmp_path):
    _, path = _export(local_sr, tmp_path, "vhd", "none")
    os.truncate(path, os.path.getsize(path) - 4096)
    _refused(local_sr, path, ["truncated", "corrupt"])


def test_existing_vdi_import_of_garbage_fails(local_sr, tmp_path):
    vdi = local_sr.create(SIZE)
    path = tmp_path / "garbage.zst"
    path.write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(5000))
    proc = local_sr.xe("vdi-import", "uuid=" + vdi, "filename=" + str(path), check=False)
    assert proc.returncode != 0 and "corrupt" in proc.stderr.decode()
    assert vdi in local_sr.vdi_uuids()   # a VDI the import did not create stays


@pytest.fixture(params=["module", "cli"])
def env(request):
    """The environment that picks the zstd engine of both ends."""
    need_tools("zstd")
    return {"SRKIT_ZSTD": request.param}


def _with_zero_run(sr, tmp_path, env):
    """A raw export whose 32 MiB hole is a zero run (marker and zero frames)."""
    size = 48 * MiB
    vdi = sr.create(size)
    pieces = {0: os.urandom(MiB), 40 * MiB: os.urandom(MiB)}
    sr.write(vdi, pieces)
    path = str(tmp_path / "holes.raw.zst")
    sr.xe("vdi-export", "uuid=" + vdi, "filename=" + path, "format=raw", env=env)
    return size, pieces, path


def test_zero_runs_import_as_zeros(local_sr, tmp_path, env):
    """Zero runs are skipped on a new VDI and cleared on an existing one."""
    from export_rig import apply
    size, pieces, path = _with_zero_run(local_sr, tmp_path, env)
    with open(path, "rb") as f:
        assert b"SRKIT1Z" in f.read()
    new = local_sr.xe("vdi-import", "sr-uuid=" + local_sr.uuid, "filename=" + path,
                      env=env).stdout.decode().strip()
    assert local_sr.read(new) == apply(bytes(size), pieces)
    old = local_sr.create(size)
    local_sr.write(old, {8 * MiB: b"old" * 100000, 30 * MiB: b"x" * 4096})
    local_sr.xe("vdi-import", "uuid=" + old, "filename=" + path, env=env)
    assert local_sr.read(old) == apply(bytes(size), pieces)


def test_a_moved_zero_run_is_refused(local_sr, tmp_path, env):
    """A zero run announced at the wrong place moves the data after it: refused."""
    _, _, path = _with_zero_run(local_sr, tmp_path, env)
    with open(path, "r+b") as f:
        data = f.read()
        at = data.find(b"SRKIT1Z") + 7          # the run's offset in the image
        f.seek(at)
        f.write((int.from_bytes(data[at:at + 8], "little") + MiB).to_bytes(8, "little"))
    _refused(local_sr, path, ["corrupt"], env)
