"""Round trips through `srkit xe vdi-export` / `vdi-import` for every format and
compression, on `local` and on `rbd`, checked by zstd and qemu-img."""
import json
import os
import subprocess

import pytest

from export_rig import MiB, QEMU_FORMAT, apply, decompress, need_tools, pattern, qemu_img
from simulator.testkit import REPO

SIZE = 40 * MiB


@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("compression", ["zstd", "none"])
@pytest.mark.parametrize("fmt", ["raw", "vhd", "qcow2"])
def test_round_trip(any_sr, tmp_path, fmt, compression, kind):
    need_tools("zstd", "qemu-img")
    sr = any_sr
    if sr.kind == "rbd" and kind == "dense" and compression == "none":
        pytest.skip("covered on local; the rbd matrix keeps the suite short")
    vdi = sr.create(SIZE)
    pieces = pattern(kind, SIZE)
    sr.write(vdi, pieces)
    expected = apply(bytes(SIZE), pieces)
    reference = tmp_path / "expected.raw"
    reference.write_bytes(expected)

    export = str(tmp_path / ("disk.%s%s" % (fmt, ".zst" if compression == "zstd" else "")))
    sr.xe("vdi-export", "uuid=" + vdi, "filename=" + export, "format=" + fmt,
          "compression=" + compression)
    image = decompress(export, str(tmp_path / ("plain." + fmt))) if compression == "zstd" \
        else export
    if compression == "zstd":
        with open(export, "rb") as f:
            assert f.read(4) != b"\x28\xb5\x2f\xfd"  # srkit's header frame comes first
        assert not os.path.exists(export + ".srkit")
    else:
        meta = json.load(open(export + ".srkit"))
        assert meta["header"]["virtual_size"] == SIZE and len(meta["trailer"]["digest"]) == 64

    # an independent reader says the image holds exactly the VDI
    qf = QEMU_FORMAT[fmt]
    info = json.loads(qemu_img("info", "--output=json", "-f", qf, image).stdout)
    assert info["virtual-size"] == SIZE
    cmp = qemu_img("compare", "-f", qf, "-F", "raw", image, str(reference))
    assert cmp.returncode == 0, cmp.stdout
    if fmt == "qcow2":
        check = qemu_img("check", "-f", "qcow2", image)
        assert check.returncode == 0 and b"No errors were found" in check.stdout, check.stdout
    if fmt != "raw" and kind == "sparse":
        # holes stay holes: the file holds the data extents, not the whole disk
        assert os.path.getsize(image) < SIZE // 2

    before = sr.vdi_uuids()
    new = sr.xe("vdi-import", "sr-uuid=" + sr.uuid, "filename=" + export,
                "name-label=restored").stdout.decode().strip()
    assert sr.vdi_uuids() == before | {new}
    assert sr.read(new) == expected

    # and into an existing VDI that held other data (xe's form)
    other = sr.create(SIZE)
    sr.write(other, pattern("sparse", SIZE, seed=7))
    sr.xe("vdi-import", "uuid=" + other, "filename=" + export)
    assert sr.read(other) == expected


@pytest.mark.parametrize("exporter,importer", [("cli", "module"), ("module", "cli"),
                                               ("module", "module")])
def test_zstd_engines_interoperate(local_sr, tmp_path, exporter, importer):
    """python-zstandard and the zstd CLI (the default where it is installed, as on a
    dom0) write standard frames, so either end may use either."""
    need_tools("zstd", "qemu-img")
    sr = local_sr
    vdi = sr.create(SIZE)
    pieces = pattern("sparse", SIZE)
    sr.write(vdi, pieces)
    export = str(tmp_path / "disk.qcow2.zst")
    sr.xe("vdi-export", "uuid=" + vdi, "filename=" + export, "format=qcow2",
          "compression=zstd:5", env={"SRKIT_ZSTD": exporter})
    reference = tmp_path / "expected.raw"
    reference.write_bytes(apply(bytes(SIZE), pieces))
    image = decompress(export, str(tmp_path / "plain.qcow2"))
    assert qemu_img("compare", "-f", "qcow2", "-F", "raw", image, str(reference)).returncode == 0
    new = sr.xe("vdi-import", "sr-uuid=" + sr.uuid, "filename=" + export,
                env={"SRKIT_ZSTD": importer}).stdout.decode().strip()
    assert sr.read(new) == reference.read_bytes()


def test_stdout_to_stdin(local_sr, tmp_path):
    """`-` streams: export | import, as `... | ssh host srkit xe vdi-import ...` does."""
    need_tools("zstd")
    sr = local_sr
    vdi = sr.create(SIZE)
    pieces = pattern("sparse", SIZE)
    sr.write(vdi, pieces)
    env = dict(os.environ, SRKIT_POOL=sr.pool.path)
    import sys
    cmd = [sys.executable, "-m", "simulator.cli", "xe"]
    exporter = subprocess.Popen(cmd + ["vdi-export", "uuid=" + vdi, "filename=-",
                                       "format=vhd", "compression=zstd:1"],
                                cwd=REPO, env=env, stdout=subprocess.PIPE)
    importer = subprocess.run(cmd + ["vdi-import", "sr-uuid=" + sr.uuid, "filename=-"],
                              cwd=REPO, env=env, stdin=exporter.stdout,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    exporter.stdout.close()
    assert exporter.wait() == 0
    assert importer.returncode == 0, importer.stderr
    new = importer.stdout.decode().strip()
    assert sr.read(new) == apply(bytes(SIZE), pieces)
    assert importer.stderr == b""   # no progress bar when stderr is not a terminal


def test_bad_arguments(local_sr, tmp_path):
    sr = local_sr
    vdi = sr.create(4 * MiB)
    out = str(tmp_path / "x")
    for args, words in ((["format=vmdk"], "vmdk"), (["compression=gzip"], "gzip"),
                        (["compression=zstd:99"], "level")):
        proc = sr.xe("vdi-export", "uuid=" + vdi, "filename=" + out, *args, check=False)
        assert proc.returncode != 0 and words in proc.stderr.decode(), proc.stderr
        assert not os.path.exists(out)
