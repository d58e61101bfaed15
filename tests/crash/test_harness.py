"""The matrix's checks can fail: each kind of damage it exists to catch, made by hand on
a `local` SR (the harness itself knows no driver; this self-test borrows one)."""
import os

import pytest

import matrix


@pytest.fixture
def scenario(tmp_path):
    s = matrix.Scenario(matrix.load_profile('local'), str(tmp_path))
    s.sr_dir = os.path.join(s.device_config['location'], s.sr_uuid)
    s.raw = lambda ref: os.path.join(s.sr_dir, s.pool.vdi_record(ref)['location'] + '.raw')
    assert s.check() == []
    yield s
    s.pool.close()


def test_an_orphan_object_is_reported(scenario):
    open(os.path.join(scenario.sr_dir, 'f00d.raw'), 'w').close()
    assert any("'f00d.raw' has no VDI" in p for p in scenario.check())


def test_wrong_bytes_are_reported(scenario):
    with open(scenario.raw(scenario.S), 'r+b') as f:
        f.write(matrix.pattern('A2'))
    assert any('not its own bytes' in p for p in scenario.check())


def test_a_size_disagreement_is_reported(scenario):
    os.truncate(scenario.raw(scenario.A), 3 * matrix.SIZE)
    problems = scenario.check()
    assert any('xapi size' in p for p in problems), problems


def test_a_lost_vdi_is_reported(scenario):
    uuid = scenario.uuid(scenario.S)
    os.unlink(scenario.raw(scenario.S))
    scenario.scan(1)
    assert 'VDI %s existed before and is gone' % uuid in scenario.check()


def test_an_unexpected_new_vdi_is_reported(scenario):
    scenario.pool.vdi_create(scenario.sr, matrix.SIZE)
    assert any('makes no VDI' in p for p in scenario.check())


def test_a_point_never_reached_is_reported(tmp_path):
    problems = matrix.crash_at(matrix.load_profile('local'), 'vdi_resize', 'local.no.such',
                               str(tmp_path))
    assert any('point never reached' in p for p in problems), problems
