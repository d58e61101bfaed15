"""`make rpm` (packaging/build.py): the signed yum repository, installed with dnf into empty
roots that hold only a stand-in for dom0's packages."""
import os
import re
import subprocess
import sys
import xmlrpc.client

import pytest
from rpm_helpers import REPO, XAPI_DEFAULTS, build, local_repo, run, xapi_core

sys.path.insert(0, os.path.join(REPO, 'packaging'))
import spec  # noqa: E402

registry = spec.runtime_registry()

DROPIN = '/etc/xapi.conf.d/99-srkit.conf'
# rpmlib features EL7's rpm 4.11 knows (no PayloadIsZstd)
EL7_RPMLIB = {'CompressedFileNames', 'FileDigests', 'PayloadFilesHavePrefix', 'PayloadIsXz',
              'PayloadIsBzip2', 'PayloadIsLzma', 'VersionedDependencies',
              'ScriptletInterpreterArgs', 'PartialHardlinkSets', 'TildeInVersions'}
INFO = ('<methodCall><methodName>sr_get_driver_info</methodName><params><param><value>'
        '<struct><member><name>command</name><value>sr_get_driver_info</value></member>'
        '<member><name>args</name><value><array><data/></array></value></member>'
        '<member><name>device_config</name><value><struct/></value></member>'
        '</struct></value></param></params></methodCall>')


def drivers_in_tree():
    drivers, _ = spec.present(REPO, spec.read_drivers(), spec.read_tools(), lambda m: None)
    return drivers


def rpms(out):
    return sorted(str(p) for p in (out / 'repo').glob('*.rpm'))


def with_srpm(out):
    return rpms(out) + sorted(str(p) for p in (out / 'SRPMS').glob('*.rpm'))


def qp(fmt, path):
    return run(['rpm', '-qp', '--nosignature', '--qf', fmt, path])


def sm_plugins(root):
    lines = [l for l in root.file(DROPIN).read_text().splitlines() if l.startswith('sm-plugins=')]
    assert len(lines) == 1, lines
    return lines[0].split('=', 1)[1].split()


# --- the repository -----------------------------------------------------------------------

def test_repo_holds_every_package_signed_metadata_and_a_repo_file(built):
    out, log = built
    names = sorted(qp('%{NAME}', r) for r in rpms(out))
    expected = ['srkit', 'srkit-framework', 'srkit-tools']
    expected += ['srkit-%s' % d.package for d in drivers_in_tree()]
    assert names == sorted(expected)
    assert {'srkit-local', 'srkit-rbd'} <= set(names)
    assert [p.name for p in (out / 'SRPMS').glob('*.src.rpm')] == ['srkit-0.1.0-1.src.rpm']
    for f in ('repodata/repomd.xml', 'repodata/repomd.xml.asc', 'RPM-GPG-KEY-srkit'):
        assert (out / 'repo' / f).is_file(), f
    repo_file = (out / 'repo' / 'srkit.repo').read_text()
    for line in ('baseurl=file://%s/repo' % out, 'gpgcheck=1', 'repo_gpgcheck=1',
                 'gpgkey=file://%s/repo/RPM-GPG-KEY-srkit' % out):
        assert line in repo_file.splitlines()
    # declared drivers that are not written yet are skipped by name, not silently
    for d in spec.read_drivers():
        if d not in drivers_in_tree():
            assert 'skipping driver %s' % d.type in log


def test_each_driver_rpm_requires_what_the_registry_says_it_needs(built):
    out, _ = built
    for d in drivers_in_tree():
        (path,) = [r for r in rpms(out) if qp('%{NAME}', r) == 'srkit-' + d.package]
        requires = {line.split()[0] for line in run(
            ['rpm', '-qp', '--nosignature', '--requires', path]).splitlines()}
        # less srkit's own packages, rpm's features and the interpreters of the scripts
        outside = {r for r in requires if not r.startswith(('srkit', 'rpmlib(', '/'))}
        assert outside == {n[1] for n in registry.needs(d.type, registry.REQUIRED)}, d.type


def test_payloads_are_ones_el7_rpm_reads(built):
    out, _ = built
    for r in with_srpm(out):
        assert qp('%{PAYLOADCOMPRESSOR}', r) in ('gzip', 'xz'), r
        features = set(re.findall(r'^rpmlib\(([^)]+)\)', run(
            ['rpm', '-qp', '--nosignature', '--requires', r]), re.M))
        assert features <= EL7_RPMLIB, (r, features - EL7_RPMLIB)
        # noarch for dom0's python 3.6: no dependency on the build machine's python ABI
        assert 'python(abi)' not in run(['rpm', '-qp', '--nosignature', '--requires', r])


def test_signatures_verify_with_the_public_key_only(built, tmp_path):
    out, _ = built
    key = out / 'repo' / 'RPM-GPG-KEY-srkit'
    keyring = tmp_path / 'srkit.gpg'
    run(['gpg', '--batch', '--quiet', '--dearmor', '--output', str(keyring), str(key)])
    repomd = out / 'repo' / 'repodata' / 'repomd.xml'
    run(['gpgv', '--keyring', str(keyring), str(repomd) + '.asc', str(repomd)])
    forged = tmp_path / 'repomd.xml'
    forged.write_bytes(repomd.read_bytes().replace(b'<revision>', b'<revision>1'))
    assert subprocess.run(['gpgv', '--keyring', str(keyring), str(repomd) + '.asc',
                           str(forged)], capture_output=True).returncode != 0

    packages = with_srpm(out)
    db = ['--dbpath', str(tmp_path / 'rpmdb')]
    unknown = subprocess.run(['rpm', '-K'] + db + packages[:1], capture_output=True, text=True)
    assert unknown.returncode != 0  # not verifiable before the key is imported
    run(['rpm'] + db + ['--import', str(key)])
    for line in run(['rpm', '-K'] + db + packages).splitlines():
        assert line.endswith('digests signatures OK'), line
    keyid = run(['gpg', '--batch', '--with-colons', '--show-keys', str(key)]).split('pub:')[1]
    keyid = keyid.split(':')[3].lower()
    for r in packages:
        # a v4 header signature and the v3 header+payload one EL7's yum checks, both RSA
        sigs = qp('%{RSAHEADER:pgpsig}|%{SIGPGP:pgpsig}', r).split('|')
        assert all(s.startswith('RSA/SHA256') and s.endswith(keyid) for s in sigs), sigs


def test_two_builds_of_one_commit_have_identical_payloads(built, tmp_path):
    out, _ = built
    again = tmp_path / 'again'
    build(again)  # another throwaway key: signatures differ, payloads must not
    first = {os.path.basename(r): r for r in with_srpm(out)}
    second = {os.path.basename(r): r for r in with_srpm(again)}
    assert sorted(first) == sorted(second)
    for name in first:
        payloads = [subprocess.run(['rpm2cpio', p[name]], capture_output=True, check=True).stdout
                    for p in (first, second)]
        assert payloads[0] == payloads[1], name
        digests = [qp('%{PAYLOADDIGEST} %{BUILDTIME} %{BUILDHOST}', p[name])
                   for p in (first, second)]
        assert digests[0] == digests[1], name


def test_rpmlint_passes_with_the_documented_filters(built):
    out, _ = built
    specfile = out / 'rpmbuild' / 'SPECS' / 'srkit.spec'
    packages = with_srpm(out)
    proc = subprocess.run(['rpmlint', '-r', os.path.join(REPO, 'packaging', 'rpmlintrc')] +
                          packages + [str(specfile)], capture_output=True, text=True)
    assert proc.returncode == 0 and ' 0 errors' in proc.stdout, proc.stdout + proc.stderr


# --- installed on a (stand-in) host ---------------------------------------------------------

@pytest.fixture
def installed(make_root):
    root = make_root()
    root.log = root.dnf('install', 'srkit')
    return root


def test_meta_package_installs_everything_where_listed(installed, built):
    out, _ = built
    root = installed
    names = set(root.rpm('-qa', '--qf', '%{NAME}\n').split())
    assert {qp('%{NAME}', r) for r in rpms(out)} <= names
    for r in rpms(out):
        for path in run(['rpm', '-qpl', '--nosignature', r]).splitlines():
            if path != '(contains no files)' and path != DROPIN:
                assert os.path.lexists(root.file(path)), path
    for d in drivers_in_tree():
        exe = root.file('/opt/xensource/sm/' + d.sm)
        assert os.access(exe, os.X_OK) and exe.read_text().startswith('#!/usr/bin/python3\n')
        assert root.file('/usr/lib/srkit/%s/__init__.py' % d.modules[0]).is_file()
    assert root.file('/usr/lib/srkit/framework/entry.py').is_file()
    assert root.file('/usr/bin/srkit').is_file()
    # nothing of srkit in a place the sm package owns, other than its own executables
    sm_dir = set(os.listdir(root.file('/opt/xensource/sm')))
    assert sm_dir == {d.sm for d in drivers_in_tree()}


def test_post_wrote_the_dropin_with_xapi_defaults_plus_ours(installed):
    root = installed
    ours = [d.type for d in drivers_in_tree()]
    assert sm_plugins(root) == XAPI_DEFAULTS + ['linstor'] + sorted(ours)
    assert 'xe-toolstack-restart on every host of the pool' in root.log
    assert os.listdir(root.file('/etc/xapi.conf.d')) == ['99-srkit.conf']


def test_installed_driver_answers_driver_info(installed):
    if os.path.exists('/usr/lib/srkit'):
        pytest.skip('this machine has its own /usr/lib/srkit, which the driver would use')
    root = installed
    proc = subprocess.run([str(root.file('/opt/xensource/sm/LocalSR')), INFO],
                          capture_output=True, text=True,
                          env={'PATH': '/usr/sbin:/usr/bin:/sbin:/bin',
                               'PYTHONPATH': str(root.file('/usr/lib/srkit'))})
    assert proc.returncode == 0, proc.stderr
    (info,), _ = xmlrpc.client.loads(proc.stdout)
    assert info['name'] == 'Local' and info['required_api_version'] == '1.0'
    assert 'VDI_CREATE' in info['capabilities']
    # it ran the installed copy, not the source tree
    assert list(root.file('/usr/lib/srkit/framework').glob('__pycache__/entry.*.pyc'))


def test_installed_srkit_command_offers_host_subcommands_only(installed):
    root = installed
    srkit = str(root.file('/usr/bin/srkit'))
    usage = run([srkit, '--help'])
    assert '  vdi-export' in usage and '  vdi-import' in usage
    for simulated in ('xe ', 'pool-init', 'demo', 'conformance', 'docs'):
        assert '  ' + simulated not in usage
    assert 'uuid=<vdi> filename=' in run([srkit, 'vdi-export', '--help'])
    # the host command is the runtime's (framework/cli.py): no simulator file is installed
    assert not root.file('/usr/lib/srkit/simulator').exists()
    tools = root.rpm('-ql', 'srkit-tools').split()
    assert tools and not [f for f in tools if 'simulator' in f], tools


def test_removing_a_driver_rewrites_the_dropin_without_it(make_root):
    root = make_root()
    root.dnf('install', 'srkit')
    # what other sm-plugins lines whitelist survives the rewrite (the last line of each
    # file counts, as in xapi); comments do not count
    root.file('/etc/xapi.conf.d/50-admin.conf').write_text(
        'sm-plugins=ext nfs old\nsm-plugins=ext MooseFS\n')
    root.file('/etc/xapi.conf').write_text('# sm-plugins=commented\nsm-plugins = ext  lvm\n')
    log = root.dnf('remove', 'srkit-rbd')
    left = set(root.rpm('-qa', '--qf', '%{NAME}\n').split())
    assert 'srkit-rbd' not in left and 'srkit' not in left  # the meta package needs it
    assert {'srkit-framework', 'srkit-local', 'srkit-tools'} <= left
    plugins = sm_plugins(root)
    assert 'rbd' not in plugins and 'local' in plugins and 'moosefs' in plugins
    assert 'old' not in plugins and 'commented' not in plugins
    assert plugins[:len(XAPI_DEFAULTS)] == XAPI_DEFAULTS and len(set(plugins)) == len(plugins)
    assert 'xe-toolstack-restart' in log
    assert not root.file('/opt/xensource/sm/RBDSR').exists()
    assert not root.file('/usr/lib/srkit/drivers/ceph').exists()


def test_hook_that_cannot_build_the_list_keeps_the_old_one(make_root):
    """In a root without tr (and sed), the hook refuses: exit 1, the reason on stderr, the
    drop-in as it was (never `sm-plugins=` with nothing after it), nothing left behind."""
    root = make_root()
    root.dnf('install', 'srkit')
    before = root.file(DROPIN).read_text()
    assert not root.file('/bin/sed').exists()
    root.file('/bin/tr').unlink()
    proc = subprocess.run(['chroot', str(root.path), '/usr/libexec/srkit/sm-plugins'],
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc
    reason = proc.stderr.split('NOT rewriting %s: the sm-plugins list built here lacks' % DROPIN)
    assert len(reason) == 2, proc.stderr
    assert reason[1].split(' (')[0].split() == XAPI_DEFAULTS + sorted(
        d.type for d in drivers_in_tree())
    assert root.file(DROPIN).read_text() == before
    # as rpm runs it: removing a driver leaves the old list (a name without a driver is
    # harmless to xapi) and the transaction goes on
    log = root.dnf('remove', 'srkit-rbd')
    assert 'NOT rewriting' in log
    assert not root.file('/opt/xensource/sm/RBDSR').exists()
    assert root.file(DROPIN).read_text() == before
    assert not [p for p in root.tree() if '.srkit-sm-plugins' in p]


def test_removing_everything_leaves_nothing_behind(make_root):
    root = make_root()
    root.dnf('install', 'srkit')
    subprocess.run([str(root.file('/opt/xensource/sm/LocalSR')), INFO], capture_output=True,
                   env={'PYTHONPATH': str(root.file('/usr/lib/srkit'))})  # writes __pycache__
    assert root.file(DROPIN).exists()
    root.dnf('remove', 'srkit-*', 'srkit')
    assert 'srkit' not in root.rpm('-qa')
    assert root.tree() == root.baseline, sorted(root.tree() ^ root.baseline)


def test_an_xapi_update_that_adds_a_default_type_reaches_the_dropin(installed, tmp_path):
    root = installed
    newer = xapi_core(tmp_path / 'xapi', '26.1.5', ' '.join(XAPI_DEFAULTS + ['qcow2']))
    root.add_repo('updates', local_repo(tmp_path / 'updates', [newer]))
    log = root.dnf('upgrade', 'xapi-core')
    assert 'qcow2' in sm_plugins(root)  # the framework's trigger on xapi-core re-ran the hook
    assert 'xe-toolstack-restart' in log


def test_upgrade_keeps_the_dropin_and_leaves_nothing_behind(make_root, built, tmp_path):
    out, _ = built
    newer = tmp_path / 'newer'
    build(newer, release='2', key_of=out)  # the same key, passed as a real key is
    root = make_root()
    root.dnf('install', 'srkit')
    before = sm_plugins(root)
    root.use_repo(newer / 'repo')
    root.dnf('upgrade')
    releases = set(root.rpm('-qa', '--qf', '%{NAME} %{RELEASE}\n').splitlines())
    assert {r for r in releases if r.startswith('srkit')} == {
        '%s 2' % qp('%{NAME}', r) for r in rpms(out)}
    assert sm_plugins(root) == before  # every %postun of release 1 ran after 2's markers
    assert not [p for p in root.tree() if p.endswith(('.rpmsave', '.rpmnew'))]
    root.dnf('remove', 'srkit-*', 'srkit')
    assert root.tree() == root.baseline, sorted(root.tree() ^ root.baseline)


def test_srpm_alone_rebuilds_the_same_payloads(built, tmp_path):
    """rpmbuild --rebuild with no srkit-specific settings (as a distribution's build system
    would) gives the same packages: gzip payload, reproducible."""
    out, _ = built
    srpm = str(next((out / 'SRPMS').glob('*.src.rpm')))
    top = tmp_path / 'rebuild'
    run(['rpmbuild', '--rebuild', '--nodeps', '--quiet', '--define', '_topdir %s' % top,
         '--define', '_dbpath %s/rpmdb' % top, srpm],
        env=dict(os.environ, SOURCE_DATE_EPOCH='1700000000'))
    for r in rpms(out):
        again = top / 'RPMS' / 'noarch' / os.path.basename(r)
        assert qp('%{PAYLOADDIGEST}', str(again)) == qp('%{PAYLOADDIGEST}', r), r


def test_files_run_on_a_host_are_python36(tmp_path):
    """The host's srkit command runs on dom0's Python 3.6, as the drivers do."""
    host = [os.path.join(REPO, t.source) for t in spec.read_tools()
            if t.source.endswith('.py') or t.dest.startswith('/usr/bin/')]
    proc = subprocess.run([sys.executable, '-c', 'import sys, vermin; sys.exit(vermin.main())',
                           '-t=3.6-', '--no-tips', '--violations', '--eval-annotations'] + host,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- the tables the spec is generated from ----------------------------------------------------

def test_declared_driver_not_in_tree_is_skipped_with_a_message(tmp_path):
    table = tmp_path / 'drivers.tsv'
    table.write_text('local local drivers/local LocalSR\n'
                     'nope  nope  drivers/nope  NopeSR\n')
    said = []
    drivers, _ = spec.present(REPO, spec.read_drivers(str(table)), [], said.append)
    assert [d.type for d in drivers] == ['local']
    assert said and 'nope' in said[0] and 'drivers/nope' in said[0]


def test_requires_come_from_the_registry_not_the_table(tmp_path):
    table = tmp_path / 'drivers.tsv'
    table.write_text('rbd rbd drivers/ceph RBDSR\n')
    (rbd,) = spec.read_drivers(str(table))
    assert rbd.requires == [n[1] for n in registry.needs('rbd', registry.REQUIRED)]
    assert 'rbd-nbd' in rbd.requires and 'rbd-fuse' not in rbd.requires  # optional: no Requires
    table.write_text('rbd rbd drivers/ceph RBDSR python36-rados\n')  # the old fifth column
    with pytest.raises(ValueError, match='framework/registry.py'):
        spec.read_drivers(str(table))


def test_table_and_registry_name_the_same_drivers():
    """A driver in one and not the other, or a NEEDS line whose type is misspelt (its package
    would silently be no RPM's Requires), fails here."""
    types = {d.type for d in spec.read_drivers()}
    assert types == set(registry.DRIVERS)
    assert {n[0] for n in registry.NEEDS} <= types
    assert {n[2] for n in registry.NEEDS} <= {registry.REQUIRED, registry.OPTIONAL}
    for sr_type in types:
        for n in registry.needs(sr_type):
            assert registry.package_for(sr_type, n[3]) == n[1]


def test_a_driver_is_one_line_of_the_table(tmp_path):
    drivers = [spec.Driver('local', 'local', ['drivers/local'], 'LocalSR', []),
               spec.Driver('demo', 'demo', ['drivers/demo', 'drivers/shared'], 'DemoSR', ['x']),
               spec.Driver('other', 'other', ['drivers/other', 'drivers/shared'], 'OtherSR', [])]
    text = spec.render('1.0', '1', 0, drivers, [])
    assert '%package demo' in text and 'Requires:       x' in text
    assert 'Requires:       srkit-demo = %{version}-%{release}' in text
    # a module directory two drivers share is shipped once, by the framework
    files = text.split('%files framework', 1)[1].split('%files tools', 1)[0]
    assert '%{srkit_lib}/drivers/shared' in files
    assert text.count('%{srkit_lib}/drivers/shared\n') == 1


def test_table_rejects_an_executable_that_registers_another_type(tmp_path):
    table = tmp_path / 'drivers.tsv'
    table.write_text('zfs zfs drivers/zfs ZFSVolSR\n')
    with pytest.raises(ValueError, match="'zfsvol'"):
        spec.read_drivers(str(table))
