"""Issue 11 item 13: a backend library missing on the host ends every command in 47 with
the registry's install hint, wherever the driver imports it (not 1200)."""
import os
import stat

import pytest

from protocol_rig import REPO, checked

HERE = os.path.dirname(os.path.abspath(__file__))
BLOCKING = """#!/usr/bin/python3
import sys
sys.path.insert(0, %r)
sys.path.insert(0, %r)


class Block(object):  # a host without these packages
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in %r:
            raise ModuleNotFoundError("No module named %%r" %% name, name=name)
        return None

    find_module = None


sys.meta_path.insert(0, Block())
from framework.entry import run
run(%r)
"""


def launcher(tmp_path, target, blocked=()):
    path = os.path.join(str(tmp_path), 'TestSR')
    with open(path, 'w') as f:
        f.write(BLOCKING % (REPO, HERE, tuple(blocked), target))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_late_import_error_is_47_naming_the_module(local, tmp_path):
    path = launcher(tmp_path, 'missing_lib_driver:MissingLibDriver')
    doc = local.document('sr_attach')
    log_before = len(local.smlog)
    value, fault = checked(*local.pool.run_raw(path, doc))
    assert fault is not None and fault[0] == 47, (value, fault)
    assert 'srkit_no_such_binding' in fault[1]
    assert 'Traceback' not in local.smlog[log_before:]


def test_rbd_without_python3_rados_is_47_with_the_install_hint(local, tmp_path):
    from framework.registry import install_hint, package_for
    hint = install_hint('rbd')
    path = launcher(tmp_path, 'rbd', blocked=('rados', 'rbd'))
    doc = local.document('sr_probe', device_config={
        'SRmaster': 'true', 'monitors': '127.0.0.1:1', 'key': 'AQ' + 'A' * 38})
    value, fault = checked(*local.pool.run_raw(path, doc))
    assert fault is not None and fault[0] == 47, (value, fault)
    assert hint in fault[1] and package_for('rbd', 'rados') in fault[1]


def test_driver_info_needs_no_backend_library(local, tmp_path):
    path = launcher(tmp_path, 'rbd', blocked=('rados', 'rbd'))
    doc = local.document('sr_get_driver_info')
    value, fault = checked(*local.pool.run_raw(path, doc))
    assert fault is None and value['name']


@pytest.mark.parametrize('driver', ['AbortingDriver', 'AbortingAfterCephCaptureDriver'])
def test_a_process_killed_in_a_library_leaves_its_python_stack_on_stderr(local, tmp_path,
                                                                          driver):
    """Issue 16: an rbd vdi_delete died of SIGABRT and left nothing to say where."""
    path = launcher(tmp_path, 'aborting_driver:' + driver)
    rc, out, err = local.pool.run_raw(path, local.document('sr_attach'))
    assert rc == -6 and out == ''
    assert 'Fatal Python error: Aborted' in err, err
    assert 'in sr_attach' in err, err
