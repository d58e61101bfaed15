"""srkit / srkit xe: xe syntax, xe-like output and errors, no tracebacks."""
import subprocess
import sys

import pytest

from simulator import cli
from simulator.xe import parse_size


def xe(capsys, *argv):
    rc = cli.main(["xe"] + list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def xe_pool(tmp_path, sm_dir, monkeypatch, capsys):
    monkeypatch.setenv("SRKIT_POOL", str(tmp_path / "clipool"))
    assert cli.main(["pool-init", "--hosts", "2", "--sm-dir", str(sm_dir)]) == 0
    capsys.readouterr()


def test_sizes():
    assert parse_size("10GiB") == 10 << 30 and parse_size("512MiB") == 512 << 20
    assert parse_size("4096") == 4096


def test_xe_flow(xe_pool, capsys):
    rc, out, _ = xe(capsys, "sm-list", "--minimal")
    assert rc == 0 and len(out.strip().split(",")) == 1
    rc, sr, err = xe(capsys, "sr-create", "type=fake", "name-label=s", "shared=true",
                     "device-config:location=/x")
    sr = sr.strip()
    assert rc == 0 and err == "" and len(sr) == 36
    rc, vdi, _ = xe(capsys, "vdi-create", "sr-uuid=" + sr, "name-label=d", "virtual-size=1GiB")
    vdi = vdi.strip()
    rc, out, _ = xe(capsys, "vdi-param-list", "uuid=" + vdi)
    assert "virtual-size ( RO): 1073741824" in out and out.startswith("uuid ( RO)")
    rc, snap, _ = xe(capsys, "vdi-snapshot", "uuid=" + vdi)
    rc, out, _ = xe(capsys, "vdi-list", "sr-uuid=" + sr, "--minimal")
    assert sorted(out.strip().split(",")) == sorted([vdi, snap.strip()])
    rc, out, _ = xe(capsys, "vdi-attach", "uuid=" + vdi, "mode=RO")
    assert out.startswith("/dev/fake/")
    assert xe(capsys, "vdi-detach", "uuid=" + vdi)[0] == 0
    rc, out, _ = xe(capsys, "pbd-list", "sr-uuid=" + sr, "--minimal")
    assert len(out.strip().split(",")) == 2


def test_xe_errors(xe_pool, capsys):
    rc, out, err = xe(capsys, "sr-create", "type=fake", "device-config:fail=sr_create")
    assert rc == 1 and out == ""
    assert err.splitlines()[0] == "Error code: SR_BACKEND_FAILURE_46"
    assert err.splitlines()[1].startswith("Error parameters: , The VDI is not available")
    rc, _, err = xe(capsys, "vdi-param-list", "uuid=00000000-0000-0000-0000-000000000000")
    assert rc == 1 and "UUID_INVALID" in err and "Traceback" not in err
    rc, _, err = xe(capsys, "vdi-create", "virtual-size=1GiB")
    assert rc == 1 and "sr-uuid" in err
    assert xe(capsys, "no-such-command")[0] == 1


def test_console_script_is_lazy():
    code = ("import sys; from simulator import cli; cli.main(['xe', 'help']); "
            "assert 'pytest' not in sys.modules and 'simulator.pool' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
