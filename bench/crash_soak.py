#!/usr/bin/env python3
"""Random-time SIGKILL soak: the crash-consistency figure of issue 11.

    .venv/bin/python bench/crash_soak.py [--driver local] [--kills 1000] [--seed N]

Generic over drivers through the crash-matrix profiles (tests/crash/profile_<type>.py,
see tests/crash/README.md). On one SR it runs random mutating commands (create,
delete, snapshot, clone, resize, revert, update, scan) on random VDIs and SIGKILLs
the driver process from the outside, like the OOM killer, at a random moment: half
the time anywhere in its life, half the time inside its backend work (see Killer;
``kills_after_a_step`` counts the kills that came after the command passed at least
one crash point, i.e. not in interpreter start-up). After every command,
killed or not, it scans twice and checks against the backend's own view, exactly
as the matrix does: every VDI reads back bytes it may hold, no backend object
without a VDI, no VDI lost, sizes agree. Now and then it writes new distinct bytes
to a VDI through its attached device. Prints one JSON line per driver; exit
status 1 if any check failed.
"""
import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, 'tests', 'crash'))

import matrix  # noqa: E402
from simulator import sm_exec  # noqa: E402
from simulator.errors import XapiError  # noqa: E402

MAX_VDIS = 8


class Killer:
    """Runs drivers as the simulator does, but SIGKILLs the next one at a planned moment.

    Two ways to pick the moment, half the time each: anywhere in the process's life
    (``life``: a fraction of its expected duration, interpreter start-up included), or
    inside its backend work (``work``: a fraction of the expected time left after
    it passed its first crash point, seen in its SRKIT_CRASH_TRACE file)."""

    def __init__(self):
        self.plan = None
        self.expected = {}  # command -> (seconds in all, seconds to the first point)
        self.real_run = sm_exec.run
        sm_exec.run = self.run

    def arm(self, mode, fraction, trace):
        self.plan = (mode, fraction, trace)

    def run(self, executable, document, env, command=''):
        plan, self.plan = self.plan, None
        if plan is None:
            return self.real_run(executable, document, env, command)
        mode, fraction, trace = plan
        total, first = self.expected.get(command, (0.3, 0.15))
        rec = sm_exec.CallRecord(command=command, executable=executable, document=document)
        start = time.monotonic()
        proc = subprocess.Popen([executable, document], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                close_fds=True)
        seen = {}

        def watch():
            while proc.poll() is None:
                now = time.monotonic()
                if 'first' not in seen and os.path.exists(trace) and os.path.getsize(trace):
                    seen['first'] = now
                if mode == 'life':
                    due = now >= start + fraction * total
                else:
                    due = 'first' in seen and \
                        now >= seen['first'] + fraction * max(total - first, 0.005)
                if due:
                    try:
                        proc.send_signal(signal.SIGKILL)
                    except OSError:
                        pass
                    return
                time.sleep(0.001)
        watcher = threading.Thread(target=watch)
        watcher.start()
        out, err = proc.communicate()
        watcher.join()
        rec.seconds = time.monotonic() - start
        rec.returncode = proc.returncode
        rec.stdout, rec.stderr = out.decode('utf-8', 'replace'), err.decode('utf-8', 'replace')
        if proc.returncode == 0 and 'first' in seen:
            self.expected[command] = (rec.seconds, seen['first'] - start)
        return rec


def choose(scenario, commands, rng):
    refs = scenario.pool.sr_record(scenario.sr)['VDIs']
    recs = dict((ref, scenario.pool.vdi_record(ref)) for ref in refs)
    writable = [r for r in refs if not recs[r]['is_a_snapshot']]
    snapshots = [r for r in refs if recs[r]['is_a_snapshot']
                 and recs[r]['snapshot_of'] in recs]
    options = ['sr_scan']
    if len(refs) < MAX_VDIS:
        options += ['vdi_create'] + [c for c in ('vdi_snapshot', 'vdi_clone')
                                     if c in commands and writable]
    if refs:
        options += ['vdi_delete', 'vdi_delete'] if len(refs) >= MAX_VDIS // 2 else ['vdi_delete']
        options += [c for c in ('vdi_update',) if c in commands]
    if writable and 'vdi_resize' in commands:
        options.append('vdi_resize')
    if snapshots and 'vdi_revert' in commands:
        options.append('vdi_revert')
    command = rng.choice(options)
    if command in ('vdi_create', 'sr_scan'):
        return command, None
    if command == 'vdi_revert':
        return command, rng.choice(snapshots)
    if command in ('vdi_resize', 'vdi_snapshot', 'vdi_clone') and writable:
        return command, rng.choice(writable)
    return command, rng.choice(refs)


def soak(name, kills, seed, minutes=None, out=sys.stderr):
    profile = matrix.load_profile(name)
    reason = profile.unavailable()
    if reason:
        return {'driver': name, 'skipped': reason}
    rng = random.Random(seed)
    base = tempfile.mkdtemp(prefix='crash-soak-')
    commands = matrix.supported_commands(profile, matrix.workdir(base, 'caps'))
    killer = Killer()
    scenario = matrix.Scenario(profile, matrix.workdir(base, 'soak'))
    stats = {'driver': name, 'seed': seed, 'kills': 0, 'commands': 0, 'failures': 0,
             'by_command': {}, 'kills_after_a_step': 0}
    trace = os.path.join(base, 'trace')
    failures = []
    start = shown = time.time()
    writes = 0
    try:
        while stats['kills'] < kills and not (
                minutes and time.time() - start > minutes * 60):
            command, ref = choose(scenario, commands, rng)
            mode = rng.choice(('life', 'work'))
            fraction = rng.uniform(0, 1.05)
            if os.path.exists(trace):
                os.unlink(trace)
            killer.arm(mode, fraction, trace)
            killed = False
            refused = []
            try:
                scenario.act(command, ref, {'SRKIT_CRASH_TRACE': trace})
            except matrix.Killed:
                killed = True
            except XapiError as e:  # a command refused after earlier kills is a finding
                refused = ['%s refused: %s' % (command, e)]
            stats['commands'] += 1
            if killed:
                stats['kills'] += 1
                stats['kills_' + mode] = stats.get('kills_' + mode, 0) + 1
                # killed past python start-up: the command had passed a crash point
                if os.path.exists(trace) and os.path.getsize(trace):
                    stats['kills_after_a_step'] += 1
                row = stats['by_command'].setdefault(command, 0)
                stats['by_command'][command] = row + 1
            try:
                scenario.scan()
                problems = refused + scenario.check()
            except Exception as e:  # a failed recovery is a finding, not the end
                problems = ['recovery failed: %s' % (e,)]
            if problems:
                stats['failures'] += 1
                failures.append({'command': command, 'killed': killed, 'mode': mode,
                                 'fraction': fraction,
                                 'problems': problems})
                print('FAIL %s (killed=%s, %s %.2f): %s' % (
                    command, killed, mode, fraction, '; '.join(problems)), file=out)
            scenario.observe()
            refs = [r for r in scenario.pool.sr_record(scenario.sr)['VDIs']
                    if not scenario.pool.vdi_record(r)['is_a_snapshot']]
            if refs and rng.random() < 0.15:
                ref = rng.choice(refs)
                writes += 1
                data = matrix.pattern('w%d-%d' % (seed, writes))
                scenario.write(ref, data)
                scenario.expect[scenario.uuid(ref)] = {data}
            # every 100 commands, and at least every 2 minutes: a slow backend (zfsvol
            # under TCG) cut off by its bound still leaves its figures
            if stats['commands'] % 100 == 0 or time.time() - shown > 120:
                shown = time.time()
                print('%s: %d commands, %d kills, %d failures, %.0f s' % (
                    name, stats['commands'], stats['kills'], stats['failures'],
                    time.time() - start), file=out)
    finally:
        problems = scenario.teardown()
        stats['teardown'] = problems
        stats['seconds'] = round(time.time() - start, 1)
        stats['first_failures'] = failures[:5]
    return stats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--driver', action='append',
                        help='profile name (default: every profile in tests/crash)')
    parser.add_argument('--kills', type=int, default=1000)
    parser.add_argument('--seed', type=int, default=None)
    parser.add_argument('--minutes', type=float, default=None,
                        help='stop after this long even if fewer kills were made')
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    failed = False
    for name in args.driver or matrix.profile_names():
        result = soak(name, args.kills, seed, args.minutes)
        print(json.dumps(result, sort_keys=True))
        failed = failed or bool(result.get('failures')) or bool(result.get('teardown'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
