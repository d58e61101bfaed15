"""framework/files/fusedev.detach: a stale record (left by a killed command) names a loop
device by number; once that number serves another attachment, detaching the record must
leave that device alone (issue 16: the same fault in the s3 datapath read b'' at 6 MiB)."""
import os
import shutil
import subprocess

import pytest

from framework.files import fusedev

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("losetup"),
                                reason="needs root and losetup")


@pytest.fixture
def loop_on(tmp_path):
    made = []

    def attach(path):
        with open(path, "wb") as f:
            f.truncate(1 << 20)
        dev = subprocess.run(["losetup", "--find", "--show", str(path)], check=True,
                             stdout=subprocess.PIPE, universal_newlines=True).stdout.strip()
        made.append(dev)
        return dev
    yield attach
    for dev in made:
        if fusedev.backing_of(dev) is not None:
            subprocess.run(["losetup", "--detach", dev])


def test_a_stale_record_leaves_another_attachments_loop_device(tmp_path, loop_on):
    (tmp_path / "old-mount").mkdir()
    (tmp_path / "other").mkdir()
    dev = loop_on(tmp_path / "other" / "disk")   # the number now serves another file
    fusedev.detach({"loop": dev, "mount": str(tmp_path / "old-mount")})
    assert fusedev.backing_of(dev) == str(tmp_path / "other" / "disk")


def test_a_record_detaches_its_own_loop_device(tmp_path, loop_on):
    mount = tmp_path / "mount"
    mount.mkdir()
    dev = loop_on(mount / "disk")
    fusedev.detach({"loop": dev, "mount": str(mount)})
    assert fusedev.backing_of(dev) is None
