"""What every runtime file must honour: dom0's Python 3.6, lazy heavy imports."""
import glob
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYS_PY = '/usr/bin/python3'
DRIVERS = sorted(glob.glob(os.path.join(REPO, 'sm_drivers', '*SR')))
INFO = ('<methodCall><methodName>sr_get_driver_info</methodName><params><param><value>'
        '<struct><member><name>command</name><value>sr_get_driver_info</value></member>'
        '<member><name>args</name><value><array><data/></array></value></member>'
        '<member><name>device_config</name><value><struct/></value></member>'
        '</struct></value></param></params></methodCall>')
# Modules a driver-info call must not pay for: backend bindings and the slow stdlib ones.
HEAVY = ('rados', 'rbd', 'boto3', 'botocore', 'XenAPI', 'xmlrpc.client', 'subprocess',
         'json', 'uuid', 'http.client')


def vermin(*args):
    return subprocess.run([sys.executable, '-c', 'import sys, vermin; sys.exit(vermin.main())',
                           '-t=3.6-', '--no-tips', '--violations'] + list(args),
                          capture_output=True, text=True)


def test_runtime_code_runs_on_python36():
    files = [os.path.join(REPO, d) for d in ('framework', 'drivers')] + DRIVERS
    proc = vermin('--eval-annotations', *files)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_vermin_catches_a_37_feature(tmp_path):
    # guards the check above against passing vacuously
    bad = tmp_path / 'bad.py'
    bad.write_text('from dataclasses import dataclass\n')
    proc = vermin(str(bad))
    assert proc.returncode != 0


@pytest.mark.parametrize('driver', DRIVERS, ids=os.path.basename)
def test_driver_info_imports_nothing_heavy(driver):
    proc = subprocess.run([SYS_PY, '-X', 'importtime', driver, INFO],
                          capture_output=True, text=True,
                          env={'PATH': '/sbin:/usr/sbin:/bin:/usr/bin', 'ORIGINATOR': 'SM'})
    assert proc.returncode == 0
    assert '<methodResponse>' in proc.stdout and '<fault>' not in proc.stdout
    imported = set(line.split('|')[-1].strip() for line in proc.stderr.splitlines()
                   if line.startswith('import time:'))
    assert imported, 'importtime output missing'
    assert not imported.intersection(HEAVY), sorted(imported.intersection(HEAVY))


@pytest.mark.parametrize('driver', DRIVERS, ids=os.path.basename)
def test_driver_executable_has_python3_shebang(driver):
    with open(driver) as f:
        assert f.readline().strip() == '#!/usr/bin/python3'
    assert os.access(driver, os.X_OK)


def shadowed_methods(source):
    """(class, name, line) where ``self.name = ...`` replaces a method of that class."""
    import ast
    found = []
    for cls in ast.walk(ast.parse(source)):
        if not isinstance(cls, ast.ClassDef):
            continue
        methods = {f.name for f in cls.body if isinstance(f, ast.FunctionDef)}
        for node in ast.walk(cls):
            for target in getattr(node, 'targets', ()):
                if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) \
                        and target.value.id == 'self' and target.attr in methods:
                    found.append((cls.name, target.attr, node.lineno))
    return found


def test_no_attribute_shadows_a_method():
    # drivers/s3/disk.py had `self.zero = memoryview(...)` beside `def zero()`: every
    # TRIM and WRITE_ZEROES then failed with EIO, and only a real device showed it
    files = [f for d in ('framework', 'drivers', 'simulator')
             for f in glob.glob(os.path.join(REPO, d, '**', '*.py'), recursive=True)]
    found = [(os.path.relpath(f, REPO),) + s for f in files
             for s in shadowed_methods(open(f).read())]
    assert not found


def test_shadowed_methods_finds_the_disk_bug():
    assert shadowed_methods('class D:\n    def __init__(self):\n        self.zero = b""\n'
                            '    def zero(self):\n        pass\n') == [('D', 'zero', 3)]
