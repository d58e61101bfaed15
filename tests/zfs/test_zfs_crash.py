"""The crash matrix (tests/crash) for zfsvol, inside the guest: every mutating command
killed at every crash point it passes, then two scans, then the checks against
`zfs list` and the zvol devices (tests/crash/profile_zfsvol.py). Every kill costs a
fresh SR and base state: ~12.5 min for the seven commands at TCG speed on a quiet
machine: one of the guest's long rows, which ./dev test runs only with
SRKIT_LONG=1 or SRKIT_ZFS_CRASH=1 (the guest inherits the caller's environment)."""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "crash"))

import matrix  # noqa: E402

pytestmark = [pytest.mark.zfs, pytest.mark.skipif(
    os.environ.get("SRKIT_ZFS_CRASH") == "0", reason="SRKIT_ZFS_CRASH=0")]
COMMANDS = [c for c, _ in matrix.COMMANDS]


@pytest.mark.parametrize("command", COMMANDS)
def test_zfsvol_crash_matrix(tmp_path, command):
    profile = matrix.load_profile("zfsvol")
    reason = profile.unavailable()
    if reason:
        pytest.skip(reason)
    if command not in matrix.supported_commands(profile, matrix.workdir(tmp_path, "caps")):
        pytest.skip("zfsvol SRs do not offer %s" % command)
    failures = matrix.crash_failures(profile, command, tmp_path)
    assert not failures, "\n".join(failures)
