"""Helpers for the packaging tests: `make rpm` into a directory, stand-in dom0 packages
built with rpmbuild, and install roots filled by `dnf --installroot` from local repositories.
(A module of its own, not conftest.py, so that tests import it by a name no other test
directory uses.)
"""
import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOLS = ('rpmbuild', 'rpmsign', 'rpm2cpio', 'createrepo_c', 'dnf', 'rpmlint', 'gpg', 'gpgv')
BUSYBOX = '/bin/busybox'
# what the srkit scriptlets and the sm-plugins hook run, all busybox applets (no sed, no
# tail: the hook reads other sm-plugins lines with shell builtins, and every test proves it)
APPLETS = ('sh', 'rm', 'mkdir', 'cat', 'mv', 'tr', 'cmp', 'chmod', 'echo', 'ls')
# dom0 owns these directories (filesystem, xapi-core, sm; /etc/xapi.d/plugins is xapi's
# host-plugin directory); srkit must not leave them behind
DOM0_DIRS = ('/bin', '/etc', '/etc/xapi.conf.d', '/etc/xapi.d', '/etc/xapi.d/plugins',
             '/opt', '/opt/xensource', '/opt/xensource/sm',
             '/usr', '/usr/bin', '/usr/lib', '/usr/libexec')
EPOCH = '1700000000'
# XCP-ng 8.3's default sm-plugins (xapi.conf as patched by XCP-ng's xapi RPM,
# ../shared/reference/smapiv1.md 1.5)
XAPI_DEFAULTS = ('ext nfs iscsi lvmoiscsi dummy file hba rawhba udev iso lvm lvmohba lvmofcoe '
                 'shm smb cephfs glusterfs xfs zfs largeblock').split()


def missing_tools():
    gone = [t for t in TOOLS if not shutil.which(t)]
    # the stand-in's /bin/sh runs inside an empty root: it must be statically linked
    if not os.path.exists(BUSYBOX) or subprocess.run(
            ['ldd', BUSYBOX], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0:
        gone.append(BUSYBOX + ' (busybox-static)')
    return gone


def run(cmd, **kw):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          **kw)
    assert proc.returncode == 0, '%s\n%s' % (' '.join(cmd), proc.stdout)
    return proc.stdout


def build(out, release='1', key_of=None):
    """`make rpm` into ``out`` with a repo URL pointing there; signed with a throwaway key,
    or with the one of the earlier build into ``key_of`` given as a real key would be."""
    env = {k: v for k, v in os.environ.items() if k not in ('SRKIT_GPG_KEY', 'GNUPGHOME')}
    env['SOURCE_DATE_EPOCH'] = EPOCH
    if key_of:
        env['GNUPGHOME'] = str(key_of / 'gnupg')
        env['SRKIT_GPG_KEY'] = 'srkit throwaway signing key'
    proc = subprocess.run([sys.executable, os.path.join(REPO, 'packaging', 'build.py'),
                           '--out', str(out), '--repo-url', 'file://%s/repo' % out,
                           '--release', release],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if key_of:
        subprocess.run(['gpgconf', '--kill', 'gpg-agent'], env=env)
    assert proc.returncode == 0, proc.stdout
    return proc.stdout


def requirement_provides(rpms):
    """What the srkit packages need from outside srkit, as Provides lines for the stand-in."""
    provides = set()
    for line in run(['rpm', '-qp', '--requires', '--nosignature'] + rpms).splitlines():
        name = line.split()[0]
        if name.startswith(('srkit', 'rpmlib(', 'config(')) or name in ('/bin/sh', 'xapi-core'):
            continue
        # `python3 >= 3.6` and the like: provide that very version
        provides.add(line.replace('>=', '=').strip())
    return sorted(provides)


def stub_rpm(top, name, version, preamble, install, files):
    """Build a small package with rpmbuild under ``top``; returns its path."""
    for d in ('SPECS', 'SOURCES', 'RPMS', 'BUILD', 'BUILDROOT', 'SRPMS'):
        (top / d).mkdir(parents=True, exist_ok=True)
    lines = ['%global __os_install_post %{nil}',
             '%global _binaries_in_noarch_packages_terminate_build 0',
             'Name: %s' % name, 'Version: %s' % version, 'Release: 1',
             'Summary: Stand-in for an XCP-ng dom0 package (tests only)',
             'License: GPL-2.0-only', 'BuildArch: noarch', 'AutoReqProv: no']
    lines += preamble + ['%description', 'tests only', '%install'] + install + ['%files'] + files
    spec = top / 'SPECS' / ('%s.spec' % name)
    spec.write_text('\n'.join(lines) + '\n')
    run(['rpmbuild', '-bb', '--quiet', '--define', '_topdir %s' % top,
         '--define', '_binary_payload w9.gzdio', '--define', '_dbpath %s/rpmdb' % top,
         str(spec)])
    return next((top / 'RPMS' / 'noarch').glob('%s-%s-*.rpm' % (name, version)))


def xapi_core(top, version, sm_plugins):
    """xapi-core as it matters here: /etc/xapi.conf with an sm-plugins line."""
    (top / 'SOURCES').mkdir(parents=True, exist_ok=True)
    (top / 'SOURCES' / 'xapi.conf').write_text(
        '# stand-in for xapi-core %s\nsm-plugins=%s\n' % (version, sm_plugins))
    return stub_rpm(top, 'xapi-core', version, ['Requires: dom0-standin'],
                    ['mkdir -p %{buildroot}/etc',
                     'install -m 0644 %{_sourcedir}/xapi.conf %{buildroot}/etc/xapi.conf'],
                    ['%config(noreplace) /etc/xapi.conf'])


def local_repo(path, packages):
    path.mkdir()
    for p in packages:
        shutil.copy(p, path)
    run(['createrepo_c', '--quiet', str(path)])
    return path


class Root(object):
    """An empty install root that dnf fills from the srkit repo (through the srkit.repo file
    `make rpm` wrote, signature checks on) and the stand-in repo, nothing else."""

    def __init__(self, path, srkit_repo, standin_repo):
        self.path = path
        self.conf = conf = path.parent / (path.name + '-conf')
        (conf / 'repos.d').mkdir(parents=True)
        shutil.copy(srkit_repo / 'srkit.repo', conf / 'repos.d' / 'srkit.repo')
        (conf / 'repos.d' / 'standin.repo').write_text(
            '[standin]\nname=standin\nbaseurl=file://%s\ngpgcheck=0\n' % standin_repo)
        (conf / 'dnf.conf').write_text('[main]\n')
        self.dnf_args = [
            'dnf', '-y', '--installroot=%s' % path, '--releasever=8.3',
            '--config=%s' % (conf / 'dnf.conf'), '--setopt=reposdir=%s' % (conf / 'repos.d'),
            '--noplugins', '--setopt=install_weak_deps=False',
            '--setopt=cachedir=%s' % (conf / 'cache'), '--setopt=tsflags=nodocs',
            # as yum on EL7: removing a package does not remove what it had pulled in
            '--setopt=clean_requirements_on_remove=False']
        self.dnf('install', 'dom0-standin', 'xapi-core')
        self.baseline = self.tree()

    def use_repo(self, repo):
        """Take srkit packages from another build's repository from now on."""
        shutil.copy(repo / 'srkit.repo', self.conf / 'repos.d' / 'srkit.repo')

    def add_repo(self, name, path):
        (self.conf / 'repos.d' / ('%s.repo' % name)).write_text(
            '[%s]\nname=%s\nbaseurl=file://%s\ngpgcheck=0\n' % (name, name, path))

    def close(self):
        """Stop the gpg-agents dnf starts for repo_gpgcheck (one per repo keyring)."""
        for pubring in self.conf.glob('cache/*/pubring'):
            subprocess.run(['gpgconf', '--homedir', str(pubring), '--kill', 'gpg-agent'],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def dnf(self, *args):
        return run(self.dnf_args + list(args))

    def rpm(self, *args):
        return run(['rpm', '--root', str(self.path)] + list(args))

    def file(self, path):
        return self.path / path.lstrip('/')

    def tree(self):
        """Every path in the root, except dnf's and rpm's own state."""
        found = set()
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = '/' + os.path.relpath(dirpath, self.path)
            if rel.startswith(('/var', '/root', '/etc/dnf', '/tmp')):
                dirnames[:] = []
                continue
            found.update(os.path.join(rel, n) for n in dirnames + filenames)
        return found
