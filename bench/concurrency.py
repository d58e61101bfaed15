#!/usr/bin/env python3
"""Two hosts at once: the concurrency load of issue 16 (finding 5), over any driver.

    .venv/bin/python bench/concurrency.py [--driver s3] [--ops 1000] [--races 20]
                                          [--workers 8] [--seed N]

Generic over drivers through the crash-matrix profiles (tests/crash/profile_<type>.py,
tests/crash/README.md): one shared SR in a simulated pool of two hosts. ``--workers``
threads per host act like the VMs of that host: each owns the VDIs it made and picks at
random among create, snapshot, clone, attach (read-write on its own host: write
distinct bytes through the device, read them back, detach), delete and, now and then,
``sr_scan``. Commands xapi runs on the SR master go there, as xapi sends them; attaches
go to the worker's host. Meanwhile a racer makes ``--races`` activation races: a fresh
VDI that both hosts attach and activate read-write at the same moment (a barrier, no
xapi lock between them): exactly one must win, the other must get VDI_IN_USE.

At the end everything is detached, ``sr_scan`` runs twice with no GC grace (the load is
over), and the backend's own listing (the profile's ``objects``) must hold exactly the
VDIs xapi knows, each reading back the bytes its owner last wrote (``read``). Prints
one JSON line per driver: ops, unexpected errors, races (won by exactly one, by both,
by none), leaks, wall time; exit status 1 on any fault.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'tests', 'crash'))

import matrix  # noqa: E402
from simulator import Pool  # noqa: E402
from simulator.errors import XapiError  # noqa: E402
from simulator.testkit import detach_all, read_at, write_at  # noqa: E402

SIZE = matrix.SIZE
BLOCK = matrix.BLOCK
MAX_OWNED = 4   # VDIs one worker holds at most: the SR stays small, deletes stay common


def device_size(dev):
    try:
        fd = os.open(dev, os.O_RDONLY)
        try:
            return os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
    except OSError as e:
        return repr(e)


class Outcome(object):
    """What the load saw, shared by every thread (guarded by one lock)."""

    def __init__(self, log):
        self.log = log
        self.lock = threading.Lock()
        self.ops = {}
        self.errors = []
        self.races = {'one_winner': 0, 'double_writer': 0, 'no_winner': 0}
        self.race_problems = []
        self.unchecked = []   # reads of the backend that raced another worker

    def count(self, op):
        with self.lock:
            self.ops[op] = self.ops.get(op, 0) + 1

    def error(self, what):
        with self.lock:
            self.errors.append(what)
        print('ERROR %s' % what, file=self.log)

    @property
    def total(self):
        with self.lock:
            return sum(self.ops.values())


class Load(object):
    """One shared SR of ``profile`` on a fresh two-host pool, and the threads on it."""

    def __init__(self, profile, workdir, workers=8, seed=0, log=sys.stderr):
        self.profile = profile
        self.workdir = workdir
        self.workers = workers
        self.seed = seed
        self.log = log
        self.outcome = Outcome(log)
        sm_dir = os.path.join(workdir, 'sm')
        os.makedirs(sm_dir)
        os.symlink(os.path.join(REPO, 'sm_drivers', profile.EXECUTABLE),
                   os.path.join(sm_dir, profile.EXECUTABLE))
        self.env = dict(getattr(profile, 'EXTRA_ENV', {}))
        self.pool = Pool(os.path.join(workdir, 'pool'), sm_dir=sm_dir, hosts=2,
                         extra_env=dict(self.env))
        self.features = set(self.pool.features(profile.TYPE))
        self.device_config = profile.device_config(workdir)
        self.sr = self.pool.sr_create(profile.TYPE, self.device_config,
                                      name_label='concurrency', shared=True)
        self.sr_uuid = self.pool.sr_record(self.sr)['uuid']
        self.expect = {}   # vdi uuid -> the first BLOCK bytes it must read back
        self.expect_lock = threading.Lock()

    # --- the workers' load ------------------------------------------------------------
    def uuid(self, ref):
        return self.pool.vdi_record(ref)['uuid']

    def expected(self, ref, data=None):
        with self.expect_lock:
            if data is not None:
                self.expect[self.uuid(ref)] = data
            return self.expect.get(self.uuid(ref))

    def backend_block(self, ref):
        rec = self.pool.vdi_record(ref)
        return self.profile.read(self.device_config, self.sr_uuid, rec['location'], 0, BLOCK)

    def worker(self, index, host, budget, stop):
        rng = random.Random('%s-%d' % (self.seed, index))
        owned = []      # refs this worker made: only it attaches or deletes them
        writes = 0
        while not stop.is_set() and budget():
            options = ['attach'] * 3 + ['scan'] * (1 if rng.random() < 0.15 else 0)
            writable = [r for r in owned if not self.pool.vdi_record(r)['is_a_snapshot']]
            if len(owned) < MAX_OWNED:
                options += ['create'] * 2
                if writable:
                    options += [c for c, f in (('snapshot', 'VDI_SNAPSHOT'),
                                               ('clone', 'VDI_CLONE')) if f in self.features]
            if owned:
                options += ['delete'] * (3 if len(owned) >= MAX_OWNED else 1)
            op = rng.choice(options)
            if op == 'attach' and not writable:
                op = 'create' if len(owned) < MAX_OWNED else 'delete'
            try:
                if op == 'create':
                    ref = self.pool.vdi_create(self.sr, SIZE, name_label='w%d' % index)
                    owned.append(ref)
                    self.expected(ref, matrix.ZERO)
                elif op in ('snapshot', 'clone'):
                    src = rng.choice(writable)
                    ref = getattr(self.pool, 'vdi_' + op)(src)
                    owned.append(ref)
                    self.expected(ref, self.expected(src))
                    self.check_bytes(op, ref)
                elif op == 'attach':
                    ref = rng.choice(writable)
                    writes += 1
                    data = matrix.pattern('w%d-%d' % (index, writes))
                    dev = self.pool.vdi_attach(ref, host=host, writable=True)['params']
                    try:
                        write_at(dev, 0, data)
                        back = read_at(dev, 0, BLOCK)
                    except OSError as e:   # name the VDI and what its device looked like
                        raise OSError(e.errno, '%s on %s (VDI %s, device of %s bytes)' % (
                            e.strerror, dev, self.uuid(ref), device_size(dev)))
                    finally:
                        self.pool.vdi_detach(ref, host=host)
                    self.expected(ref, data)
                    if back != data:
                        self.outcome.error('attach: %s read %r back through its device'
                                           % (self.uuid(ref), back[:24]))
                    self.check_bytes(op, ref)
                elif op == 'delete':
                    ref = owned.pop(rng.randrange(len(owned)))
                    uuid = self.uuid(ref)
                    self.pool.vdi_destroy(ref)
                    with self.expect_lock:
                        self.expect.pop(uuid, None)
                elif op == 'scan':
                    self.pool.sr_scan(self.sr)
            except XapiError as e:
                self.outcome.error('%s (worker %d): %s' % (op, index, e))
            except Exception:
                self.outcome.error('%s (worker %d): %s' % (op, index, traceback.format_exc()))
            self.outcome.count(op)

    def check_bytes(self, op, ref):
        want = self.expected(ref)
        try:
            got = self.backend_block(ref)
        except Exception as e:   # noqa: BLE001
            # a profile's read lists the backend and then opens what it found (profile_rbd
            # searches every image for a snapshot): another worker's delete in between
            # makes it fail. Counted; the final check (nothing moving) reads every VDI.
            with self.outcome.lock:
                self.outcome.unchecked.append('%s: %r' % (op, e))
            return
        if got != want:
            self.outcome.error('%s: %s holds %r..., not %r...' % (
                op, self.uuid(ref), got[:24], (want or b'')[:24]))

    # --- activation races ---------------------------------------------------------------
    def race(self, number):
        """Both hosts attach + activate one fresh VDI read-write at the same moment."""
        ref = self.pool.vdi_create(self.sr, SIZE, name_label='race%d' % number)
        self.outcome.count('create')
        hosts = self.pool.hosts[:2]
        barrier = threading.Barrier(2)
        result = {}

        def plug(host):
            attached = False
            try:
                barrier.wait()
                self.pool.call('vdi_attach', host=host, vdi=ref, args=['true'])
                attached = True
                if 'VDI_ACTIVATE' in self.features:
                    self.pool.call('vdi_activate', host=host, vdi=ref, args=['true'])
                result[host] = ('won', None)
            except XapiError as e:
                result[host] = ('lost', e)
                if attached:   # xapi unwinds a failed plug
                    try:
                        self.pool.call('vdi_detach', host=host, vdi=ref)
                    except XapiError as e2:
                        result[host] = ('lost', e, e2)
        threads = [threading.Thread(target=plug, args=(h,)) for h in hosts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.outcome.count('race')
        winners = [h for h in hosts if result[h][0] == 'won']
        kind = {1: 'one_winner', 2: 'double_writer', 0: 'no_winner'}[len(winners)]
        with self.outcome.lock:
            self.outcome.races[kind] += 1
        for h in hosts:
            r = result[h]
            if r[0] == 'lost' and (r[1].code != 'VDI_IN_USE' or len(r) > 2):
                self.outcome.error('race %d: the loser got %s%s' % (
                    number, r[1], ' and its detach %s' % r[2] if len(r) > 2 else ''))
        for h in winners:   # unplug the winner(s) as xapi would
            try:
                if 'VDI_DEACTIVATE' in self.features:
                    self.pool.call('vdi_deactivate', host=h, vdi=ref)
                self.pool.call('vdi_detach', host=h, vdi=ref)
            except XapiError as e:
                self.outcome.error('race %d: unplugging the winner: %s' % (number, e))
        try:
            self.pool.vdi_destroy(ref)
            self.outcome.count('delete')
        except XapiError as e:
            self.outcome.error('race %d: deleting its VDI: %s' % (number, e))

    def racer(self, races, stop):
        for number in range(races):
            if stop.is_set():
                return
            try:
                self.race(number)
            except Exception:
                self.outcome.error('race %d: %s' % (number, traceback.format_exc()))

    # --- the run and the final checks ---------------------------------------------------
    def run(self, ops, races, minutes=None):
        """``ops`` worker operations over 2 hosts x ``workers`` threads, ``races``
        activation races alongside; no new operation after ``minutes``."""
        left = [ops]
        left_lock = threading.Lock()
        deadline = time.time() + minutes * 60 if minutes else None

        def budget():
            if deadline and time.time() > deadline:
                stop.set()
                return False
            with left_lock:
                left[0] -= 1
                return left[0] >= 0
        stop = threading.Event()
        hosts = self.pool.hosts[:2]
        threads = [threading.Thread(target=self.worker, args=(i, hosts[i % 2], budget, stop))
                   for i in range(2 * self.workers)]
        threads.append(threading.Thread(target=self.racer, args=(races, stop)))
        start = time.time()
        for t in threads:
            t.start()
        try:
            while any(t.is_alive() for t in threads):
                next(t for t in threads if t.is_alive()).join(30)
                print('%s: %d ops, %d errors, %.0f s' % (
                    self.profile.TYPE, self.outcome.total, len(self.outcome.errors),
                    time.time() - start), file=self.log)
        finally:
            stop.set()
            for t in threads:
                t.join()
        return time.time() - start

    def leaks(self):
        """After the load: scan twice with no grace, then compare xapi with the backend."""
        detach_all(self.pool)
        self.pool.config['extra_env'] = dict(self.env, SRKIT_GC_GRACE='0')
        problems = []
        for _ in range(2):
            self.pool.sr_scan(self.sr)
        records = [self.pool.vdi_record(r) for r in self.pool.sr_record(self.sr)['VDIs']]
        objects = self.profile.objects(self.device_config, self.sr_uuid)
        locations = dict((rec['location'], rec) for rec in records)
        for extra in sorted(set(objects) - set(locations)):
            problems.append('backend object %r has no VDI' % (extra,))
        for missing in sorted(set(locations) - set(objects)):
            problems.append('xapi VDI at %r has no backend object' % (missing,))
        for rec in records:
            want = self.expect.get(rec['uuid'])
            got = self.profile.read(self.device_config, self.sr_uuid, rec['location'], 0,
                                    BLOCK)
            if want is not None and got != want:
                problems.append('VDI %s reads %r..., not its last bytes' % (
                    rec['uuid'], got[:24]))
        leftovers = getattr(self.profile, 'leftovers', None)
        for left in leftovers(self.device_config, self.sr_uuid) if leftovers else ():
            problems.append('datapath left behind: %s' % left)
        return problems

    def teardown(self):
        return matrix.remove_sr(self.pool, self.sr, self.profile, self.device_config,
                                self.sr_uuid)


def run(name, ops, races, workers=8, seed=0, base=None, log=sys.stderr, minutes=None):
    """The load on driver ``name``; returns the figures (a dict; 'faults' lists every
    unexpected error, double or missing winner and leak)."""
    profile = matrix.load_profile(name)
    reason = profile.unavailable()
    if reason:
        return {'driver': name, 'skipped': reason}
    base = base or tempfile.mkdtemp(prefix='concurrency-')
    load = Load(profile, matrix.workdir(base, name), workers=workers, seed=seed, log=log)
    figures = {'driver': name, 'seed': seed, 'hosts': 2, 'workers_per_host': workers}
    try:
        figures['seconds'] = round(load.run(ops, races, minutes), 1)
        figures['leaks'] = load.leaks()
    finally:
        figures['teardown'] = load.teardown()
    o = load.outcome
    figures.update(ops=o.total, by_op=dict(o.ops), errors=len(o.errors),
                   first_errors=o.errors[:10], races=dict(o.races),
                   unchecked_reads=len(o.unchecked), first_unchecked=o.unchecked[:3])
    figures['faults'] = o.errors + figures['leaks'] + figures['teardown'] + \
        ['%d races with two writers' % o.races['double_writer']] * bool(o.races['double_writer']) + \
        ['%d races nobody won' % o.races['no_winner']] * bool(o.races['no_winner'])
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--driver', action='append',
                        help='profile name (default: s3, gluster, rbd)')
    parser.add_argument('--ops', type=int, default=1000)
    parser.add_argument('--races', type=int, default=20)
    parser.add_argument('--workers', type=int, default=8, help='threads per host')
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--minutes', type=float, default=None,
                        help='start no operation after this long (then the final checks)')
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    failed = False
    for name in args.driver or ('s3', 'gluster', 'rbd'):
        figures = run(name, args.ops, args.races, args.workers, seed, minutes=args.minutes)
        print(json.dumps(figures, sort_keys=True))
        sys.stdout.flush()
        failed = failed or bool(figures.get('faults'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
