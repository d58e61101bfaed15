"""Two hosts at once, short: the load of bench/concurrency.py (issue 16, finding 5) on
every shared backend whose rig is up: 2 hosts x 2 workers, 16 operations, 2 activation
races; no unexpected error, exactly one winner per race, no leak by the backend's own
listing. The full run (2 x 8 workers, >= 1,000 operations) is the bench; its figures are
in docs/crash-consistency.md."""
import importlib.util
import os

import pytest

import matrix

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_spec = importlib.util.spec_from_file_location(
    'concurrency_bench', os.path.join(REPO, 'bench', 'concurrency.py'))
concurrency = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(concurrency)

SHARED = ('s3', 'gluster', 'rbd')


@pytest.mark.parametrize('name', [
    pytest.param(n, marks=[pytest.mark.long] if n == 's3' else []) for n in SHARED])
def test_two_hosts_at_once(tmp_path, name):
    reason = matrix.load_profile(name).unavailable()
    if reason:
        pytest.skip('%s: %s' % (name, reason))
    figures = concurrency.run(name, ops=16, races=2, workers=2, seed=16, base=str(tmp_path))
    assert figures['faults'] == [], figures
    assert figures['races'] == {'one_winner': 2, 'double_writer': 0, 'no_winner': 0}
    assert figures['ops'] >= 16


def test_the_load_sees_two_writers_and_a_leak(tmp_path):
    """The checks can fail: `local` has no cross-host lease (a local SR is one host's),
    so both hosts win every race; and a file nobody owns is a leak."""
    profile = matrix.load_profile('local')
    load = concurrency.Load(profile, str(tmp_path / 'w'), workers=1, seed=1)
    try:
        load.race(0)
        stray = os.path.join(load.device_config['location'], load.sr_uuid, 'stray.bin')
        with open(stray, 'wb') as f:
            f.write(b'x')
        assert load.outcome.races['double_writer'] == 1
        assert "backend object 'stray.bin' has no VDI" in load.leaks()
        os.unlink(stray)
    finally:
        assert load.teardown() == []
