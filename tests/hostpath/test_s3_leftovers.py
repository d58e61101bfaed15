"""The crash matrix of the s3 kernel datapath: vdi_attach and vdi_detach killed at each of
their crash points (SRKIT_CRASH_AT, as tests/crash does for the mutating commands), then
the recovery the next command applies. After it: no /dev/nbdN left connected, no NBD
server running, the VDI attaches again and reads back as of its last flush.

  killed vdi_attach   xapi believes the attach failed and never detaches: the next
                      vdi_attach of the VDI, or sr_scan, undoes what it left
  killed vdi_detach   xapi retries the detach: that one finishes the job
"""
import os

import pytest

from s3_guest import (admin, device_config, guest_s3, make_sr, nbds,  # noqa: F401
                      pool, servers_of, sr)
from s3_rig import CHUNK, pattern, read_vdi, write_vdi
from simulator.testkit import read_at, write_at

pytestmark = pytest.mark.hostpath

ATTACH_POINTS = ["s3.attach.after-server", "s3.attach.after-connect"]
DETACH_POINTS = ["s3.detach.after-disconnect"]


def _armed(pool, **env):
    pool.config["extra_env"] = dict(env)


def _state_files(pool, sr, uuid):
    """The datapath's files of VDI ``uuid`` in the hosts' state dirs (its logs stay)."""
    found = []
    for root, _, files in os.walk(pool.path):
        found += [os.path.join(root, f) for f in files if uuid in f and
                  (f.startswith("dp.") or f.startswith("nbd.")) and not f.endswith(".log")]
    return found


def test_the_points_are_the_ones_an_attach_and_detach_pass(pool, sr, tmp_path):
    v = pool.vdi_create(sr.ref, CHUNK, name_label="traced")
    trace = str(tmp_path / "trace")
    _armed(pool, SRKIT_CRASH_TRACE=trace)
    pool.call("vdi_attach", vdi=v, args=["true"])
    pool.call("vdi_detach", vdi=v)
    _armed(pool)
    with open(trace) as f:
        passed = [line.strip() for line in f if line.startswith("s3.")]
    assert passed == ATTACH_POINTS + DETACH_POINTS


@pytest.mark.parametrize("recovery", ["attach", "scan"])
@pytest.mark.parametrize("point", ATTACH_POINTS)
def test_killed_attach_is_undone_by_the_next_attach_or_scan(pool, sr, point, recovery, nbds):
    v = pool.vdi_create(sr.ref, 2 * CHUNK, name_label="victim")
    uuid = sr.location(v)
    write_vdi(pool, v, 0, pattern("flushed", 2 * CHUNK))
    _armed(pool, SRKIT_CRASH_AT=point)
    with pytest.raises(Exception):
        pool.call("vdi_attach", vdi=v, args=["true"])
    _armed(pool)
    assert len(servers_of(uuid)) == 1            # what the killed attach left running
    if point == "s3.attach.after-connect":
        assert len(nbds()) == 1
    if recovery == "scan":
        pool.sr_scan(sr.ref)
        assert nbds() == [] and servers_of(uuid) == []
        assert _state_files(pool, sr, uuid) == []
    path = pool.vdi_attach(v)["params"]
    assert nbds() == [path] and len(servers_of(uuid)) == 1
    assert read_at(path, 0, 2 * CHUNK) == pattern("flushed", 2 * CHUNK)
    write_at(path, CHUNK, pattern("after", CHUNK))
    pool.vdi_detach(v)
    assert nbds() == [] and servers_of(uuid) == []
    assert _state_files(pool, sr, uuid) == []
    assert read_vdi(pool, v, 0, 2 * CHUNK) == pattern("flushed", CHUNK) + pattern("after", CHUNK)


@pytest.mark.parametrize("point", DETACH_POINTS)
def test_killed_detach_is_finished_by_the_retried_detach(pool, sr, point, nbds):
    v = pool.vdi_create(sr.ref, 2 * CHUNK, name_label="victim")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    write_at(path, 0, pattern("last", 2 * CHUNK))
    _armed(pool, SRKIT_CRASH_AT=point)
    with pytest.raises(Exception):
        pool.vdi_detach(v)
    _armed(pool)
    assert nbds() == []                 # the device went first
    pool.sr_scan(sr.ref)                          # xapi still has it attached: left alone
    pool.vdi_detach(v)
    assert nbds() == [] and servers_of(uuid) == []
    assert _state_files(pool, sr, uuid) == []
    assert read_vdi(pool, v, 0, 2 * CHUNK) == pattern("last", 2 * CHUNK)


def test_scan_leaves_an_attached_vdi_alone(pool, sr, nbds):
    v = pool.vdi_create(sr.ref, CHUNK, name_label="busy")
    uuid = sr.location(v)
    path = pool.vdi_attach(v)["params"]
    pool.sr_scan(sr.ref)
    assert nbds() == [path] and len(servers_of(uuid)) == 1
    write_at(path, 0, pattern("still", CHUNK))
    pool.vdi_detach(v)
    assert read_vdi(pool, v, 0, CHUNK) == pattern("still", CHUNK)
