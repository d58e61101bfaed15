"""Secrets never reach SMlog or a reply; locks live under SRKIT_LOCK_DIR/<uuid>/."""
import fcntl
import os
import stat
import threading
import time

import pytest

from protocol_rig import REPO, Local, MiB
from simulator import XapiError

HERE = os.path.dirname(os.path.abspath(__file__))
LAUNCHER = """#!/usr/bin/python3
import sys
sys.path.insert(0, %r)
sys.path.insert(0, %r)
from framework.entry import run
run('secret_driver:SecretDriver')
"""


def replies(pool):
    return [(c.command, c.stdout) for c in pool.calls]


def exercise(pool, sr):
    """Every kind of call, including failing ones."""
    vdi = pool.vdi_create(sr, 2 * MiB, name_label="disk")
    pool.vdi_attach(vdi)
    pool.vdi_detach(vdi)
    snap = pool.vdi_snapshot(vdi)
    pool.sr_scan(sr)
    pool.sr_update(sr)
    pool.vdi_generate_config(vdi)
    with pytest.raises(XapiError):
        pool.vdi_resize(vdi, MiB)
    for v in (snap, vdi):
        pool.vdi_destroy(v)


def test_local_sr_with_secret_keys_masks_them(fresh):
    pool = fresh.pool
    value = "s3cr3t-value-%d" % os.getpid()
    secret_uuid = pool.secret_create(value)
    clear = "clear-password-%d" % os.getpid()
    dc = {"location": fresh.location, "password_secret": secret_uuid,
          "chap_password": clear, "api_key": "k3y-%d" % os.getpid()}
    sr = pool.sr_create("local", dc, name_label="with secrets")
    exercise(pool, sr)
    with pytest.raises(XapiError):
        pool.call("sr_attach", sr=sr, device_config={"SRmaster": "true",
                                                      "password_secret": secret_uuid,
                                                      "chap_password": clear})
    log = fresh.smlog
    assert "sr_create" in log and "vdi_snapshot" in log      # the log is really there
    for hidden in (value, secret_uuid, clear, dc["api_key"]):
        assert hidden not in log, "%r reached SMlog" % hidden
    assert "******" in log
    for command, stdout in replies(pool):
        assert value not in stdout
        if command != "vdi_generate_config":    # it must carry the PBD's device_config
            assert secret_uuid not in stdout and clear not in stdout, command


@pytest.fixture
def secret_rig(tmp_path):
    rig = Local(tmp_path)
    path = os.path.join(rig.sm_dir, "SecretSR")
    with open(path, "w") as f:
        f.write(LAUNCHER % (REPO, HERE))
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    rig.pool.discover()
    yield rig
    rig.close()


@pytest.mark.parametrize("given", ["secret", "clear"])
def test_declared_secret_is_scrubbed_even_when_the_driver_leaks_it(secret_rig, given):
    pool = secret_rig.pool
    value = "hunter2-%s-%d" % (given, os.getpid())
    dc = {"location": secret_rig.location}
    if given == "secret":
        dc["password_secret"] = pool.secret_create(value)
    else:
        dc["password"] = value
    sr = pool.sr_create("secret", dc)            # sr_attach logs the password
    with pytest.raises(XapiError) as e:
        pool.sr_probe("secret", dc)              # the fault text carries it
    assert e.value.code == "SR_BACKEND_FAILURE_47"
    assert value not in str(e.value) and "******" in e.value.params[1]
    exercise(pool, sr)
    log = secret_rig.smlog
    assert "attaching with password ******" in log
    assert value not in log
    for command, stdout in replies(pool):
        if command != "vdi_generate_config" or given == "secret":
            assert value not in stdout, command


def test_missing_secret_option_is_115(secret_rig):
    with pytest.raises(XapiError) as e:
        secret_rig.pool.sr_create("secret", {"location": secret_rig.location})
    assert e.value.code == "SR_BACKEND_FAILURE_115"
    assert "password" in e.value.params[1] and "password_secret" in e.value.params[1]


def test_unknown_secret_uuid_fails_without_leaking(secret_rig):
    with pytest.raises(XapiError) as e:
        secret_rig.pool.sr_create("secret", {"location": secret_rig.location,
                                             "password_secret": "no-such-secret-uuid"})
    assert e.value.code.startswith("SR_BACKEND_FAILURE_")
    assert "no-such-secret-uuid" not in secret_rig.smlog


# --- locks -----------------------------------------------------------------------------------------

def test_lock_files_under_lock_dir(local):
    pool = local.pool
    vdi = pool.vdi_create(local.sr, MiB)
    pool.vdi_attach(vdi)
    pool.vdi_detach(vdi)
    vuuid = pool.vdi_record(vdi)["uuid"]
    root = local.lock_dir
    assert os.path.isfile(os.path.join(root, local.sr_uuid, "sr"))
    assert os.path.isfile(os.path.join(root, vuuid, "vdi"))
    pool.vdi_destroy(vdi)
    assert not os.path.exists("/var/lock/sm/%s" % local.sr_uuid), \
        "locks must follow SRKIT_LOCK_DIR"


def test_sr_lock_really_excludes(local):
    """Holding <sr_uuid>/sr makes vdi_create wait for it."""
    path = os.path.join(local.lock_dir, local.sr_uuid, "sr")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    hold = 1.5
    timer = threading.Timer(hold, lambda: fcntl.lockf(fd, fcntl.LOCK_UN))
    start = time.monotonic()
    timer.start()
    try:
        vdi = local.pool.vdi_create(local.sr, MiB)
        elapsed = time.monotonic() - start
    finally:
        timer.join()
        os.close(fd)
    assert elapsed >= hold * 0.9, "vdi_create did not wait for the SR lock (%.2fs)" % elapsed
    local.pool.vdi_destroy(vdi)
