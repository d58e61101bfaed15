"""Kill every mutating command of every driver at every crash point it passes, scan
twice, and check against the backend's own view (see README.md and matrix.py)."""
import pytest

import matrix

CASES = [(name, command) for name in matrix.profile_names() for command, _ in matrix.COMMANDS]
# rbd and s3 have crash tests of their own (tests/ceph/test_rbd_crash.py,
# tests/s3/test_s3_kill.py); their generic rows are long ones (tests/conftest.py)
LONG_PROFILES = ('rbd', 's3')
_supported = {}


def profile_or_skip(name):
    profile = matrix.load_profile(name)
    reason = profile.unavailable()
    if reason:
        pytest.skip('%s: %s' % (name, reason))
    return profile


@pytest.mark.parametrize('name,command', [
    pytest.param(n, c, id='%s-%s' % (n, c),
                 marks=[pytest.mark.long] if n in LONG_PROFILES else []) for n, c in CASES])
def test_crash_matrix(tmp_path, name, command):
    profile = profile_or_skip(name)
    if name not in _supported:
        _supported[name] = matrix.supported_commands(profile, matrix.workdir(tmp_path, 'caps'))
    if command not in _supported[name]:
        pytest.skip('%s SRs do not offer %s' % (name, command))
    failures = matrix.crash_failures(profile, command, tmp_path)
    assert not failures, '\n'.join(failures)
