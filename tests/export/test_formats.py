"""Images written by another tool (qemu-img) import, whatever their compression;
limits of the formats are enforced."""
import subprocess
import sys

import pytest

from export_rig import MiB, apply, need_tools, pattern, qemu_img
from simulator.testkit import REPO

SIZE = 20 * MiB


@pytest.mark.parametrize("fmt,options", [("qcow2", []), ("vpc", ["-o", "subformat=dynamic,force_size=on"]),
                                         ("raw", [])])
@pytest.mark.parametrize("compressed", [True, False])
def test_import_images_written_by_qemu_img(local_sr, tmp_path, fmt, options, compressed):
    need_tools("qemu-img", "zstd")
    expected = apply(bytes(SIZE), pattern("sparse", SIZE, seed=3))
    source = tmp_path / "source.raw"
    source.write_bytes(expected)
    image = str(tmp_path / ("image." + fmt))
    proc = qemu_img("convert", "-f", "raw", "-O", fmt, *options, str(source), image)
    assert proc.returncode == 0, proc.stdout
    if compressed:
        subprocess.run(["zstd", "-q", "-f", "--rm", image, "-o", image + ".zst"], check=True)
        image += ".zst"
    if fmt == "raw" and compressed:
        # a bare compressed raw stream does not say how big the disk is
        proc = local_sr.xe("vdi-import", "sr-uuid=" + local_sr.uuid, "filename=" + image,
                           check=False)
        assert proc.returncode != 0 and "uuid=" in proc.stderr.decode()
        target = local_sr.create(SIZE)
        local_sr.xe("vdi-import", "uuid=" + target, "filename=" + image)
    else:
        target = local_sr.xe("vdi-import", "sr-uuid=" + local_sr.uuid,
                             "filename=" + image).stdout.decode().strip()
    assert local_sr.read(target) == expected


def test_vhd_limit_and_geometry():
    sys.path.insert(0, REPO)
    from framework.errors import SRError
    from framework.export import vhd
    with pytest.raises(SRError) as e:
        vhd.Writer(None, 2040 * 1024 ** 3 + 512, [])
    assert e.value.code == 79      # VDISize, before anything is written
    # the VHD specification's CHS examples: small disks use 17 sectors per track
    assert vhd.geometry(20 * MiB)[2] == 17
    assert vhd.geometry(2040 * 1024 ** 3) == (65535, 16, 255)
