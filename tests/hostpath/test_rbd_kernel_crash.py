"""The crash matrix (tests/crash) for rbd's kernel datapaths: vdi_attach and vdi_detach
killed at every crash point they pass with rbd-nbd and with krbd, then two scans,
then the matrix's checks plus what the host still maps: no rbd-nbd daemon, krbd
device or image watcher of the SR may be left (tests/crash/profile_rbd.py)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "crash"))

import matrix  # noqa: E402

# every kill costs a fresh SR and base state: one of the guest's long rows, which
# ./dev test runs only with SRKIT_LONG=1 or SRKIT_RBD_CRASH=1
pytestmark = [pytest.mark.hostpath, pytest.mark.skipif(
    os.environ.get("SRKIT_RBD_CRASH") == "0", reason="SRKIT_RBD_CRASH=0")]


@pytest.mark.parametrize("command", matrix.DATAPATH_COMMANDS)
@pytest.mark.parametrize("datapath", ["nbd", "krbd"])
def test_kernel_datapath_crash_matrix(guest_ceph, tmp_path, monkeypatch, datapath, command):
    monkeypatch.setenv("SRKIT_RBD_DATAPATH", datapath)
    profile = matrix.load_profile("rbd")
    assert command in matrix.supported_commands(profile, matrix.workdir(tmp_path, "caps"))
    failures = matrix.crash_failures(profile, command, tmp_path)
    assert not failures, "\n".join(failures)
