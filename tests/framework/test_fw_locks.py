"""framework.locks: a queue that keeps moving never times a waiter out; a stuck holder does."""
import fcntl
import os
import subprocess
import sys
import time

import pytest

from framework.errors import SRError
from framework import locks
from framework.locks import Lock

HOLD = r'''
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX)          # blocks: the kernel hands it over on unlock
open(sys.argv[1] + '.got.%d' % os.getpid(), 'w').close()
time.sleep(float(sys.argv[2]))
'''


def holders(path, n, hold):
    """n processes taking the lock one after the other, each for ``hold`` seconds; the
    first holds it when this returns, the others are queued in the kernel."""
    procs = [subprocess.Popen([sys.executable, '-c', HOLD, path, str(hold)])]
    deadline = time.time() + 30
    while not os.path.exists(path + '.got.%d' % procs[0].pid):
        assert time.time() < deadline, 'the first holder never got the lock'
        time.sleep(0.01)
    procs += [subprocess.Popen([sys.executable, '-c', HOLD, path, str(hold)])
              for _ in range(n - 1)]
    time.sleep(0.3)   # they are blocked in lockf
    return procs


def test_a_moving_queue_costs_time_not_a_failure(tmp_path, monkeypatch):
    monkeypatch.setenv('SRKIT_LOCK_DIR', str(tmp_path))
    path = str(tmp_path / 'sr-uuid' / 'sr')
    os.makedirs(os.path.dirname(path))
    procs = holders(path, 3, 1.0)   # busy for ~3 s, never by one holder for 1.5 s
    start = time.time()
    try:
        with Lock('sr-uuid', 'sr', timeout=1.5):
            waited = time.time() - start
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert waited > 1.5   # it did wait past its timeout, behind three holders


def test_a_stuck_holder_still_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv('SRKIT_LOCK_DIR', str(tmp_path))
    path = str(tmp_path / 'sr-uuid' / 'sr')
    os.makedirs(os.path.dirname(path))
    procs = holders(path, 1, 30)
    try:
        fd = os.open(path, os.O_RDWR)
        assert locks.holder_of(fd) == procs[0].pid
        os.close(fd)
        start = time.time()
        with pytest.raises(SRError) as e:
            with Lock('sr-uuid', 'sr', timeout=1.0):
                pass
        assert e.value.name == 'LockErr' and e.value.code == 37
        assert 0.9 < time.time() - start < 10
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_holder_of_a_free_lock_is_none(tmp_path):
    fd = os.open(str(tmp_path / 'l'), os.O_RDWR | os.O_CREAT)
    try:
        assert locks.holder_of(fd) is None
        fcntl.lockf(fd, fcntl.LOCK_EX)   # our own lock does not conflict with us
        assert locks.holder_of(fd) is None
    finally:
        os.close(fd)
