"""Fixtures for the packaging tests: the repository `make rpm` builds, a stand-in for dom0's
packages, and `dnf --installroot` into empty roots (local repositories only).

The tool chain comes from tests/rigs/rpm.sh (./dev test installs it); without it every test
here skips.
"""
import shutil

import pytest
from rpm_helpers import (APPLETS, BUSYBOX, DOM0_DIRS, XAPI_DEFAULTS, Root, build, local_repo,
                         missing_tools, requirement_provides, stub_rpm, xapi_core)


@pytest.fixture(scope='session')
def built(tmp_path_factory):
    gone = missing_tools()
    if gone:
        pytest.skip('RPM tools missing (tests/rigs/rpm.sh install): %s' % ', '.join(gone))
    out = tmp_path_factory.mktemp('rpm') / 'out'
    log = build(out)
    return out, log


@pytest.fixture(scope='session')
def standin(built, tmp_path_factory):
    """A repo standing in for dom0: `dom0-standin` (/bin/sh from busybox, the directories
    dom0's packages own, Provides for sm, python3 and every backend library the srkit
    packages require) and `xapi-core` (/etc/xapi.conf with XCP-ng 8.3's sm-plugins)."""
    out, _ = built
    top = tmp_path_factory.mktemp('standin')
    (top / 'SOURCES').mkdir()
    shutil.copy(BUSYBOX, top / 'SOURCES' / 'busybox')
    rpms = sorted(str(p) for p in (out / 'repo').glob('*.rpm'))
    dom0 = stub_rpm(
        top, 'dom0-standin', '8.3', ['Provides: %s' % p for p in requirement_provides(rpms)],
        ['mkdir -p %s' % ' '.join('%%{buildroot}%s' % d for d in DOM0_DIRS),
         'install -m 0755 %{_sourcedir}/busybox %{buildroot}/bin/busybox'] +
        ['ln -s busybox %%{buildroot}/bin/%s' % a for a in APPLETS],
        ['%%dir %s' % d for d in DOM0_DIRS] + ['/bin/busybox'] +
        ['/bin/%s' % a for a in APPLETS])
    xapi = xapi_core(top, '26.1.4', ' '.join(XAPI_DEFAULTS))
    return local_repo(top / 'repo', [dom0, xapi])


@pytest.fixture
def make_root(built, standin, tmp_path):
    out, _ = built
    roots = []

    def make(name='root'):
        roots.append(Root(tmp_path / name, out / 'repo', standin))
        return roots[-1]
    yield make
    for root in roots:
        root.close()
