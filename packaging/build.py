#!/usr/bin/env python3
"""`make rpm`: every srkit RPM, signed, in one yum repository, plus the SRPM.

    python3 packaging/build.py [--out DIR] [--release N] [--repo-url URL]

Writes DIR/repo/ (RPMs, repodata/ with repomd.xml.asc, RPM-GPG-KEY-srkit, srkit.repo for
/etc/yum.repos.d/), DIR/SRPMS/ and DIR/gnupg/ (the throwaway key, when no real one is set:
see signing.py). DIR defaults to dist/.

Reproducible: SOURCE_DATE_EPOCH (default: the time of the checked-out commit) sets every
mtime, build time and the changelog date, so two builds of one commit give byte-identical
payloads. Needs rpmbuild, rpmsign, createrepo_c and gpg (Debian: rpm, createrepo-c, gnupg).
"""
import argparse
import glob
import gzip
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import signing  # noqa: E402
import spec  # noqa: E402

# what the source tarball (and so the SRPM) carries: enough to rebuild every RPM
SOURCES = ('framework', 'drivers', 'sm_drivers', 'plugins', 'packaging', 'docs',
           'README.md', 'pyproject.toml', 'Makefile')
SKIP = ('__pycache__', '.pytest_cache')


def say(msg):
    sys.stderr.write('build: %s\n' % msg)


def source_date_epoch():
    if os.environ.get('SOURCE_DATE_EPOCH'):
        return int(os.environ['SOURCE_DATE_EPOCH'])
    try:
        out = subprocess.run(['git', '-C', TREE, 'log', '-1', '--format=%ct'], check=True,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
        return int(out)
    except (OSError, subprocess.CalledProcessError, ValueError):
        raise SystemExit('build: set SOURCE_DATE_EPOCH (no git history here)')


def project_version():
    with open(os.path.join(TREE, 'pyproject.toml')) as f:
        match = re.search(r'^version\s*=\s*"([^"]+)"', f.read(), re.M)
    return match.group(1)


def source_tarball(path, prefix, epoch):
    """A tar.gz whose bytes depend only on the files' contents and modes."""
    def normalise(info):
        info.mtime = epoch
        info.uid = info.gid = 0
        info.uname = info.gname = 'root'
        info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
        return info

    def add(tar, rel):
        full = os.path.join(TREE, rel)
        tar.add(full, os.path.join(prefix, rel), recursive=False, filter=normalise)
        if os.path.isdir(full):
            for name in sorted(os.listdir(full)):
                if name not in SKIP and not name.endswith(('.pyc', '.egg-info')):
                    add(tar, os.path.join(rel, name))

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode='w', format=tarfile.GNU_FORMAT) as tar:
        for rel in SOURCES:
            if os.path.exists(os.path.join(TREE, rel)):
                add(tar, rel)
    with open(path, 'wb') as f:
        with gzip.GzipFile(filename='', mode='wb', fileobj=f, mtime=0) as gz:
            gz.write(buf.getvalue())


def rpmbuild(topdir, spec_path, epoch):
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(epoch), LC_ALL='C', TZ='UTC')
    # payload compression and the reproducibility settings are in the spec itself, so
    # that `rpmbuild --rebuild` of the SRPM elsewhere gives the same packages
    defines = {
        '_topdir': topdir,
        # the build machine's own rpm database is none of this build's business
        '_dbpath': os.path.join(topdir, 'rpmdb'),
    }
    cmd = ['rpmbuild', '-ba', '--nodeps', '--quiet']
    for k, v in defines.items():
        cmd += ['--define', '%s %s' % (k, v)]
    subprocess.run(cmd + [spec_path], check=True, env=env, stdout=subprocess.DEVNULL)


def write_repo_file(path, url):
    with open(path, 'w') as f:
        f.write('# srkit: copy to /etc/yum.repos.d/ on every host of the pool\n'
                '[srkit]\n'
                'name=srkit storage-repository drivers\n'
                'baseurl=%s\n'
                'enabled=1\n'
                'gpgcheck=1\n'
                'repo_gpgcheck=1\n'
                'gpgkey=%s/RPM-GPG-KEY-srkit\n' % (url, url))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default=os.path.join(TREE, 'dist'))
    p.add_argument('--release', default=os.environ.get('SRKIT_RELEASE', '1'))
    p.add_argument('--repo-url', default=os.environ.get('SRKIT_REPO_URL',
                                                         'file:///srv/srkit/repo'),
                   help='where hosts will find the repository (written into srkit.repo)')
    args = p.parse_args(argv)
    out = os.path.abspath(args.out)
    epoch = source_date_epoch()
    version = project_version()
    drivers, tools = spec.present(TREE, spec.read_drivers(), spec.read_tools(), say)

    top = os.path.join(out, 'rpmbuild')
    shutil.rmtree(top, ignore_errors=True)
    for d in ('SOURCES', 'SPECS', 'BUILD', 'RPMS', 'SRPMS', 'BUILDROOT'):
        os.makedirs(os.path.join(top, d))
    source_tarball(os.path.join(top, 'SOURCES', 'srkit-%s.tar.gz' % version),
                   'srkit-%s' % version, epoch)
    spec_path = os.path.join(top, 'SPECS', 'srkit.spec')
    with open(spec_path, 'w') as f:
        f.write(spec.render(version, args.release, epoch, drivers, tools))
    rpmbuild(top, spec_path, epoch)
    rpms = sorted(glob.glob(os.path.join(top, 'RPMS', 'noarch', '*.rpm')))
    srpms = sorted(glob.glob(os.path.join(top, 'SRPMS', '*.rpm')))

    signer = signing.signer(os.path.join(out, 'gnupg'), say)
    try:
        signer.sign_rpms(rpms + srpms)
        repo = os.path.join(out, 'repo')
        srpm_dir = os.path.join(out, 'SRPMS')
        for d in (repo, srpm_dir):
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
        for r in rpms:
            shutil.copy2(r, repo)
        for r in srpms:
            shutil.copy2(r, srpm_dir)
        subprocess.run(['createrepo_c', '--quiet', '--revision', str(epoch),
                        '--set-timestamp-to-revision', repo], check=True)
        signer.detach_sign(os.path.join(repo, 'repodata', 'repomd.xml'))
        signer.export_public(os.path.join(repo, 'RPM-GPG-KEY-srkit'))
    finally:
        signer.close()
    write_repo_file(os.path.join(repo, 'srkit.repo'), args.repo_url.rstrip('/'))
    say('%d RPMs (%s) in %s, SRPM in %s'
        % (len(rpms), ', '.join(sorted(d.type for d in drivers)) or 'no driver', repo,
           srpm_dir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
