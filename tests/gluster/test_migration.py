"""Moving off Gluster: `srkit xe vdi-copy` and the procedure of docs/gluster.md
("Moving off Gluster"), run with the CLI exactly as documented."""
import os
import subprocess
import sys

import pytest

from simulator.testkit import REPO, write_at

MiB = 1024 * 1024


def xe(pool, *args):
    env = dict(os.environ, SRKIT_POOL=pool.path,
               PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "simulator.cli", "xe"] + list(args),
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.fixture
def target(pool, tmp_path):
    location = tmp_path / "target"
    location.mkdir()
    ref = pool.sr_create("local", {"location": str(location)}, name_label="target")
    return ref, str(location / pool.sr_record(ref)["uuid"])


def test_vdi_copy_copies_only_allocated_ranges_and_keeps_names(pool, sr, target):
    from simulator.vdi_copy import vdi_copy
    vdi = pool.vdi_create(sr.ref, 256 * MiB, name_label="data disk", name_description="db")
    uuid = sr.uuid_of(vdi)
    chunks = {0: os.urandom(MiB), 100 * MiB: os.urandom(2 * MiB), 255 * MiB: os.urandom(MiB)}
    for offset, data in chunks.items():
        write_at(sr.mount_file(uuid), offset, data)
    stats = {}
    new = vdi_copy(pool, vdi, target[0], stats)
    rec = pool.vdi_record(new)
    assert (rec["name_label"], rec["name_description"]) == ("data disk", "db")
    assert int(rec["virtual_size"]) == 256 * MiB
    assert stats["extents"] == [(0, MiB), (100 * MiB, 2 * MiB), (255 * MiB, MiB)]
    assert stats["written"] == 4 * MiB
    path = os.path.join(target[1], rec["uuid"] + ".raw")
    with open(path, "rb") as f:
        for offset, data in chunks.items():
            f.seek(offset)
            assert f.read(len(data)) == data
    assert os.stat(path).st_blocks * 512 < 6 * MiB, "the copy is not sparse"
    assert not list(pool.db.all("datapath")), "vdi-copy left a VDI plugged"


def test_documented_procedure_moves_every_vdi_off_a_gluster_sr(pool, sr, target):
    made = {}
    for i, (name, desc) in enumerate([("web", "root fs"), ("db", "postgres"), ("logs", "")]):
        vdi = pool.vdi_create(sr.ref, (8 + i) * MiB, name_label=name, name_description=desc)
        data = os.urandom(MiB // 2)
        write_at(sr.mount_file(sr.uuid_of(vdi)), i * MiB, data)
        made[name] = (desc, (8 + i) * MiB, i * MiB, data)
    pool.vdi_snapshot(pool.find("VDI", name_label="web")[0])
    src_uuid, dst_uuid = sr.uuid, pool.sr_record(target[0])["uuid"]

    # the procedure, as docs/gluster.md gives it
    vdis = xe(pool, "vdi-list", "sr-uuid=" + src_uuid, "is-a-snapshot=false", "--minimal")
    for v in vdis.split(","):
        xe(pool, "vdi-copy", "uuid=" + v, "sr-uuid=" + dst_uuid)

    copied = {}
    for ref in pool.db.get("SR", target[0])["VDIs"]:
        rec = pool.vdi_record(ref)
        copied[rec["name_label"]] = rec
    assert sorted(copied) == sorted(made)
    for name, (desc, size, offset, data) in made.items():
        rec = copied[name]
        assert rec["name_description"] == desc and int(rec["virtual_size"]) == size
        with open(os.path.join(target[1], rec["uuid"] + ".raw"), "rb") as f:
            f.seek(offset)
            assert f.read(len(data)) == data
    # then the Gluster SR can go: its VDIs, its PBDs, the SR
    for v in xe(pool, "vdi-list", "sr-uuid=" + src_uuid, "--minimal").split(","):
        xe(pool, "vdi-destroy", "uuid=" + v)
    for pbd in xe(pool, "pbd-list", "sr-uuid=" + src_uuid, "--minimal").split(","):
        xe(pool, "pbd-unplug", "uuid=" + pbd)
    xe(pool, "sr-destroy", "uuid=" + src_uuid)
    assert not any(os.path.exists(d) for d in sr.brick_dirs())
