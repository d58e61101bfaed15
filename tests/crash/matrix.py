"""The crash matrix: kill every mutating command at every crash point, scan, check.

Driver-agnostic: a driver takes part through a profile (``profile_<type>.py``, see
README.md); this module never names a driver. Used by ``test_matrix.py`` and by
``bench/crash_soak.py`` (which kills at random times instead of named points).

One scenario, on a fresh simulated pool and a fresh SR:
  1. base state: VDI ``A`` gets distinct bytes written through its attached device;
     where the SR can snapshot, ``S`` is a snapshot of ``A`` and ``A`` is then
     rewritten (so A and S differ, and a revert changes A's bytes);
  2. the command under test runs with the kill armed (a named point, or a timer);
  3. ``sr_scan`` twice;
  4. checks against the backend's own view (``Scenario.check``).
"""
import base64
import glob
import importlib.util
import os
import tempfile

from simulator import Pool
from simulator.conformance import cbt_flow
from simulator.errors import XapiError
from simulator.testkit import detach_all, write_at

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MiB = 1 << 20
SIZE = 2 * MiB
BLOCK = 4096
ZERO = bytes(BLOCK)

# command -> the xapi feature it needs
COMMANDS = (('vdi_create', 'VDI_CREATE'), ('vdi_delete', 'VDI_DELETE'),
            ('vdi_snapshot', 'VDI_SNAPSHOT'), ('vdi_clone', 'VDI_CLONE'),
            ('vdi_resize', 'VDI_RESIZE'), ('vdi_revert', 'VDI_REVERT'),
            ('vdi_update', 'VDI_UPDATE'),
            # vdi_delete of the snapshot S: a path of its own in drivers with native
            # snapshots (issue 16: an RBD snapshot a killed delete left for ever)
            ('vdi_delete_snapshot', 'VDI_DELETE'),
            ('vdi_enable_cbt', 'VDI_CONFIG_CBT'), ('vdi_disable_cbt', 'VDI_CONFIG_CBT'),
            ('vdi_data_destroy', 'VDI_CONFIG_CBT'))
# rows that act on a snapshot (S of the base state, or T for data_destroy)
NEEDS_SNAPSHOT = ('vdi_revert', 'vdi_delete_snapshot', 'vdi_data_destroy')
# a datapath that outlives the driver process (a daemon, a kernel mapping) is mutable
# state of the host too: a profile opts in with DATAPATH_CRASH = True (README.md)
DATAPATH_COMMANDS = ('vdi_attach', 'vdi_detach')


def pattern(label):
    text = ('%s|' % label).encode()
    return (text * (BLOCK // len(text) + 1))[:BLOCK]


class Killed(Exception):
    pass


class Scenario(object):
    """One fresh pool + SR of the profile's driver, in its base state."""

    def __init__(self, profile, workdir, env=None):
        self.profile = profile
        self.workdir = workdir
        self.base_env = dict({'SRKIT_GC_GRACE': '0'}, **getattr(profile, 'EXTRA_ENV', {}))
        self.base_env.update(env or {})
        self.pool = new_pool(profile, workdir, self.base_env)
        self.device_config = profile.device_config(workdir)
        self.sr = self.pool.sr_create(profile.TYPE, self.device_config, name_label='crash')
        self.sr_uuid = self.pool.sr_record(self.sr)['uuid']
        features = self.pool.features(profile.TYPE)
        self.features = set(features)
        # vdi uuid -> the contents it may hold (a set: a killed revert is done or not)
        self.expect = {}
        self.sizes = {}
        self.A = self._vdi('A')
        self.S = None
        if 'VDI_SNAPSHOT' in self.features:
            self.S = self.pool.vdi_snapshot(self.A)
            self.expect[self.uuid(self.S)] = {pattern('A')}
            self.sizes[self.uuid(self.S)] = {SIZE}
            self.write(self.A, pattern('A2'))
            self.expect[self.uuid(self.A)] = {pattern('A2')}
        self.before = set(self.expect)
        self.new_content = None   # what a VDI the command under test makes may hold
        self.may_vanish = set()
        self.T = None             # a snapshot of A taken with CBT on (vdi_data_destroy)
        self.metadata_only = set()  # data-destroyed (or maybe): no bytes to compare

    # --- helpers -------------------------------------------------------------------
    def uuid(self, ref):
        return self.pool.vdi_record(ref)['uuid']

    def _vdi(self, label):
        ref = self.pool.vdi_create(self.sr, SIZE, name_label=label)
        self.write(ref, pattern(label))
        self.expect[self.uuid(ref)] = {pattern(label)}
        self.sizes[self.uuid(ref)] = {SIZE}
        return ref

    def write(self, ref, data):
        dev = self.pool.vdi_attach(ref)['params']
        try:
            write_at(dev, 0, data)
        finally:
            self.pool.vdi_detach(ref)

    def armed(self, env):
        self.pool.config['extra_env'] = dict(self.base_env, **env)

    def disarmed(self):
        self.pool.config['extra_env'] = dict(self.base_env)

    # --- the command under test -----------------------------------------------------
    def run(self, command, env=None):
        """Run ``command`` on the base state (on A; a revert goes back to S,
        vdi_delete_snapshot deletes S; a data_destroy on T, a snapshot of A taken with
        CBT on, unarmed)."""
        if command == 'vdi_delete_snapshot':
            self.act('vdi_delete', self.S, env)
            return
        ref = self.S if command == 'vdi_revert' else self.A
        if command == 'vdi_data_destroy':
            ref = self.T or self._cbt_snapshot()
        self.act(command, ref, env)

    def _cbt_snapshot(self):
        if not self.pool.vdi_record(self.A)['cbt_enabled']:
            cbt_flow.enable(self.pool, self.A)
        self.T = cbt_flow.snapshot(self.pool, self.A)
        self.expect[self.uuid(self.T)] = set(self.expect[self.uuid(self.A)])
        self.sizes[self.uuid(self.T)] = set(self.sizes[self.uuid(self.A)])
        return self.T

    def act(self, command, ref, env=None):
        """Run ``command`` on VDI ``ref`` (for a revert: the snapshot to go back to) with
        ``env`` armed; raise Killed if the driver died of a signal. Records first what
        the command may leave behind, for ``check``."""
        uuid = self.uuid(ref) if ref is not None else None
        new_content = None
        if command == 'vdi_create':
            new_content, action = {ZERO}, lambda: self.pool.vdi_create(self.sr, SIZE)
        elif command == 'vdi_delete':
            action = lambda: self.pool.vdi_destroy(ref)  # noqa: E731
        elif command in ('vdi_snapshot', 'vdi_clone'):
            new_content = set(self.expect[uuid])
            action = lambda: getattr(self.pool, command)(ref)  # noqa: E731
        elif command == 'vdi_resize':
            size = int(self.pool.vdi_record(ref)['virtual_size']) + SIZE
            self.sizes[uuid] = self.sizes[uuid] | {size}
            action = lambda: self.pool.vdi_resize(ref, size)  # noqa: E731
        elif command == 'vdi_revert':
            target = self.uuid(self.pool.vdi_record(ref)['snapshot_of'])
            self.expect[target] = self.expect[target] | self.expect[uuid]
            self.sizes[target] = self.sizes[target] | self.sizes[uuid]
            action = lambda: self.pool.vdi_revert(ref)  # noqa: E731
        elif command == 'vdi_update':
            self.pool.db.update('VDI', ref, name_label='renamed')
            action = lambda: self.pool.vdi_update(ref)  # noqa: E731
        elif command == 'vdi_enable_cbt':
            action = lambda: cbt_flow.enable(self.pool, ref)  # noqa: E731
        elif command == 'vdi_disable_cbt':
            if not self.pool.vdi_record(ref)['cbt_enabled']:
                cbt_flow.enable(self.pool, ref)
            action = lambda: cbt_flow.disable(self.pool, ref)  # noqa: E731
        elif command == 'vdi_data_destroy':
            self.metadata_only.add(uuid)
            action = lambda: cbt_flow.data_destroy(self.pool, ref)  # noqa: E731
        elif command == 'sr_scan':
            action = lambda: self.pool.sr_scan(self.sr)  # noqa: E731
        elif command == 'vdi_attach':
            action = lambda: self.pool.vdi_attach(ref)  # noqa: E731
        elif command == 'vdi_detach':
            # attached and deactivated unarmed: the armed run is vdi_detach's alone
            self.pool.vdi_attach(ref)
            if 'VDI_DEACTIVATE' in self.features:
                self.pool.call('vdi_deactivate', vdi=ref)
            action = lambda: self._detach(ref)  # noqa: E731
        else:
            raise ValueError(command)
        self.before = set(self.expect)
        self.new_content = new_content
        self.may_vanish = {uuid} if command == 'vdi_delete' else set()
        self.armed(env or {})
        # only the command's own driver run is armed: the simulator's follow-up calls
        # (e.g. vdi_update after a snapshot) are other rows of the matrix, and whether
        # they pass a point can depend on the clock
        real_exec = self.pool._exec

        def first_only(*args, **kwargs):
            try:
                return real_exec(*args, **kwargs)
            finally:
                self.disarmed()
        self.pool._exec = first_only
        try:
            action()
        except XapiError as e:
            if 'received signal' in str(e.params[:1]):
                raise Killed(str(e.params[0]))
            raise
        finally:
            del self.pool._exec
            self.disarmed()

    def _detach(self, ref):
        self.pool.call('vdi_detach', vdi=ref)
        for dp in self.pool.db.find('datapath', VDI=ref):
            self.pool.db.delete('datapath', dp)

    def observe(self):
        """Narrow the model to what the SR now holds (after a check found it allowed)."""
        records = [self.pool.vdi_record(r) for r in self.pool.sr_record(self.sr)['VDIs']]
        for uuid in set(self.expect) - set(rec['uuid'] for rec in records):
            self.expect.pop(uuid)
            self.sizes.pop(uuid, None)
        for rec in records:
            data = self.profile.read(self.device_config, self.sr_uuid, rec['location'], 0,
                                     BLOCK)
            self.expect[rec['uuid']] = {data}
            self.sizes[rec['uuid']] = {int(rec['virtual_size'])}
        self.new_content, self.may_vanish = None, set()

    def scan(self, times=2):
        for _ in range(times):
            self.pool.sr_scan(self.sr)

    # --- the checks --------------------------------------------------------------------
    def check(self):
        """Problems found, as a list of strings (empty: all well)."""
        p = self.profile
        problems = []
        records = dict((self.pool.vdi_record(ref)['uuid'], self.pool.vdi_record(ref))
                       for ref in self.pool.sr_record(self.sr)['VDIs'])
        objects = p.objects(self.device_config, self.sr_uuid)
        locations = set(rec['location'] for rec in records.values())
        for lost in sorted(self.before - self.may_vanish - set(records)):
            problems.append('VDI %s existed before and is gone' % lost)
        for extra in sorted(set(objects) - locations):
            problems.append('backend object %r has no VDI' % (extra,))
        for missing in sorted(locations - set(objects)):
            problems.append('xapi VDI at %r has no backend object' % (missing,))
        for uuid, rec in sorted(records.items()):
            location = rec['location']
            allowed = self.expect.get(uuid, self.new_content)
            if allowed is None:
                problems.append('VDI %s appeared, but this command makes no VDI' % uuid)
                continue
            if location in objects:
                if objects[location] != int(rec['virtual_size']):
                    problems.append('VDI %s: xapi size %s, backend %s' % (
                        uuid, rec['virtual_size'], objects[location]))
                if uuid in self.sizes and int(rec['virtual_size']) not in self.sizes[uuid]:
                    problems.append('VDI %s: size %s, expected one of %s' % (
                        uuid, rec['virtual_size'], sorted(self.sizes[uuid])))
                if uuid in self.metadata_only:
                    problems.extend(self._check_cbt_metadata(uuid))
                    continue
                data = p.read(self.device_config, self.sr_uuid, location, 0, BLOCK)
                if data not in allowed:
                    problems.append('VDI %s reads %r..., not its own bytes' % (uuid, data[:24]))
        leftovers = getattr(p, 'leftovers', None)
        for left in leftovers(self.device_config, self.sr_uuid) if leftovers else ():
            problems.append('datapath left behind: %s' % left)
        return problems

    def _check_cbt_metadata(self, uuid):
        """A (maybe) data-destroyed snapshot still lists what changed since it."""
        try:
            text = cbt_flow.changed_blocks(self.pool, self.pool.by_uuid('VDI', uuid), self.A)
        except XapiError as e:
            return ['list_changed_blocks from data-destroyed %s fails: %s' % (uuid, e)]
        size = int(self.pool.vdi_record(self.A)['virtual_size'])
        if len(base64.b64decode(text)) != cbt_flow.expected_len(size):
            return ['list_changed_blocks from %s: a bitmap of the wrong length' % uuid]
        return []

    def retry(self, command):
        """The same command again, unarmed: it must work on the recovered state."""
        if command == 'vdi_delete' and self.uuid_gone(self.A):
            return
        if command == 'vdi_delete_snapshot' and self.uuid_gone(self.S):
            return
        self.run(command)
        if command == 'vdi_attach':
            self.pool.vdi_detach(self.A)

    def uuid_gone(self, ref):
        return ref not in self.pool.sr_record(self.sr)['VDIs']

    def teardown(self):
        """Remove every VDI and the SR: a recovered SR must be removable."""
        return remove_sr(self.pool, self.sr, self.profile, self.device_config, self.sr_uuid)


def remove_sr(pool, sr, profile, device_config, sr_uuid):
    """Detach, destroy every VDI, unplug and destroy the SR, close the pool, and run the
    profile's cleanup; returns the problems (a recovered SR must be removable)."""
    problems = []
    try:
        detach_all(pool)
        for ref in pool.sr_record(sr)['VDIs']:
            pool.vdi_destroy(ref)
        for pbd in pool.sr_record(sr)['PBDs']:
            pool.pbd_unplug(pbd)
        pool.sr_destroy(sr)
    except XapiError as e:
        problems.append('removing the SR failed: %s' % (e,))
    finally:
        pool.close()
        cleanup = getattr(profile, 'cleanup', None)
        if cleanup:
            cleanup(device_config, sr_uuid)
    return problems


def trace_points(profile, command, workdir):
    """The crash points ``command`` passes on the base state, in order, as
    SRKIT_CRASH_AT values (``name@n`` for a point passed more than once)."""
    scenario = Scenario(profile, workdir)
    trace = os.path.join(workdir, 'trace')
    try:
        scenario.run(command, {'SRKIT_CRASH_TRACE': trace})
    finally:
        scenario.teardown()
    seen = {}
    points = []
    with open(trace) as f:
        for name in f.read().split():
            seen[name] = seen.get(name, 0) + 1
            points.append(name if seen[name] == 1 else '%s@%d' % (name, seen[name]))
    return points


def crash_failures(profile, command, base):
    """Kill ``command`` at every crash point it passes (a fresh base state under
    ``base`` for each) and return what the checks found, one line per problem."""
    points = trace_points(profile, command, workdir(base, 'trace'))
    if not points:
        return ['%s passes no crash point' % command]
    failures = []
    for point in points:
        for problem in crash_at(profile, command, point, workdir(base, point.replace('@', '-'))):
            failures.append('%s killed at %s: %s' % (command, point, problem))
    return failures


def crash_at(profile, command, point, workdir):
    """Kill ``command`` at ``point``, recover, check; return the problems found."""
    scenario = Scenario(profile, workdir)
    problems = []
    try:
        try:
            scenario.run(command, {'SRKIT_CRASH_AT': point})
            problems.append('the command finished: point never reached')
        except Killed:
            pass
        scenario.scan()
        problems.extend(scenario.check())
        if not problems:
            scenario.retry(command)
            scenario.scan(1)
            problems.extend('after a retry: ' + p for p in scenario.check())
    except XapiError as e:
        problems.append('recovery failed: %s' % (e,))
    finally:
        problems.extend(scenario.teardown())
    return problems


def new_pool(profile, workdir, env):
    """A simulated pool whose only driver is the profile's."""
    sm_dir = os.path.join(workdir, 'sm')
    os.makedirs(sm_dir)
    os.symlink(os.path.join(REPO, 'sm_drivers', profile.EXECUTABLE),
               os.path.join(sm_dir, profile.EXECUTABLE))
    return Pool(os.path.join(workdir, 'pool'), sm_dir=sm_dir, extra_env=dict(env))


def supported_commands(profile, workdir):
    """The matrix commands the driver advertises (revert also needs snapshots)."""
    pool = new_pool(profile, workdir, {})
    try:
        features = set(pool.features(profile.TYPE))
    finally:
        pool.close()
    return [c for c, feature in COMMANDS if feature in features
            and (c not in NEEDS_SNAPSHOT or 'VDI_SNAPSHOT' in features)] + \
        list(DATAPATH_COMMANDS if getattr(profile, 'DATAPATH_CRASH', False) else ())


def workdir(base, name):
    return tempfile.mkdtemp(prefix=name + '.', dir=base)


def profile_names():
    """Every driver in the matrix: one tests/crash/profile_<type>.py each."""
    return sorted(os.path.basename(p)[len('profile_'):-len('.py')]
                  for p in glob.glob(os.path.join(HERE, 'profile_*.py')))


def load_profile(name):
    spec = importlib.util.spec_from_file_location(
        'crash_profile_' + name, os.path.join(HERE, 'profile_%s.py' % name))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
