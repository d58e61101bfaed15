"""`srkit xe` CBT commands (xe's syntax and output) and `srkit serve` as a process
that a XenAPI client reaches over HTTP."""
import base64
import os
import shutil
import signal
import subprocess
import sys

import pytest
import XenAPI

from fake_drivers import FAKE_CBT_DRIVER, write_driver
from simulator import cli
from simulator.nbd_client import NbdClient, NbdError

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# the NBD exports are qemu-nbd's (Debian qemu-utils, installed by tests/rigs/export.sh)
needs_qemu_nbd = pytest.mark.skipif(shutil.which("qemu-nbd") is None,
                                    reason="qemu-nbd missing: tests/rigs/export.sh install")


def xe(capsys, *argv):
    rc = cli.main(["xe"] + list(argv))
    out, err = capsys.readouterr()
    return rc, out.strip(), err


def test_xe_cbt_commands(tmp_path, sm_dir, monkeypatch, capsys):
    write_driver(sm_dir, "FakeCbt", FAKE_CBT_DRIVER)
    monkeypatch.setenv("SRKIT_POOL", str(tmp_path / "pool"))
    assert cli.main(["pool-init", "--sm-dir", str(sm_dir)]) == 0
    capsys.readouterr()
    _, sr, _ = xe(capsys, "sr-create", "type=fakecbt", "name-label=c",
                  "device-config:location=" + str(tmp_path / "data"))
    _, vdi, _ = xe(capsys, "vdi-create", "sr-uuid=" + sr, "name-label=d",
                   "virtual-size=1MiB")
    assert xe(capsys, "vdi-enable-cbt", "uuid=" + vdi) == (0, "", "")
    assert "cbt-enabled ( RO): true" in xe(capsys, "vdi-param-list", "uuid=" + vdi)[1]
    _, s1, _ = xe(capsys, "vdi-snapshot", "uuid=" + vdi)
    _, dev, _ = xe(capsys, "vdi-attach", "uuid=" + vdi)
    with open(dev, "r+b") as f:
        f.seek(3 * 65536)
        f.write(b"new")
    xe(capsys, "vdi-detach", "uuid=" + vdi)
    _, s2, _ = xe(capsys, "vdi-snapshot", "uuid=" + vdi)
    assert xe(capsys, "vdi-data-destroy", "uuid=" + s1) == (0, "", "")
    assert "type ( RO): cbt_metadata" in xe(capsys, "vdi-param-list", "uuid=" + s1)[1]
    assert xe(capsys, "vdi-list", "type=cbt_metadata", "--minimal")[1] == s1
    rc, out, _ = xe(capsys, "vdi-list-changed-blocks", "vdi-from-uuid=" + s1,
                    "vdi-to-uuid=" + s2)
    assert rc == 0 and base64.b64decode(out) == bytes([0b00010000, 0])  # block 3 of 16
    rc, _, err = xe(capsys, "vdi-snapshot", "uuid=" + s1)
    assert rc == 1 and err.startswith("Error code: VDI_INCOMPATIBLE_TYPE\n")
    assert xe(capsys, "vdi-disable-cbt", "uuid=" + vdi)[0] == 0
    assert "cbt-enabled ( RO): false" in xe(capsys, "vdi-param-list", "uuid=" + vdi)[1]


@needs_qemu_nbd
def test_srkit_serve_process(tmp_path, sm_dir):
    """A long-running simulated xapi: XenAPI clients log in over HTTP; on SIGTERM it
    stops its NBD exports and unplugs their VDIs."""
    from simulator import Pool
    write_driver(sm_dir, "FakeCbt", FAKE_CBT_DRIVER)
    with Pool(tmp_path / "pool", sm_dir=str(sm_dir)) as pool:
        sr = pool.sr_create("fakecbt", {"location": str(tmp_path / "data")})
        vdi = pool.vdi_create(sr, 1 << 20)
    env = dict(os.environ, SRKIT_POOL=str(tmp_path / "pool"))
    proc = subprocess.Popen([sys.executable, "-m", "simulator.cli", "serve", "--port", "0"],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        session = XenAPI.Session(url)
        session.xenapi.login_with_password("root", "", "1.0", "test")
        x = session.xenapi
        assert sorted(r["type"] for r in x.SM.get_all_records().values()) == ["fake",
                                                                             "fakecbt"]
        [info] = x.VDI.get_nbd_info(vdi)
        with NbdClient(info["address"], info["port"], info["exportname"]) as c:
            assert c.size == 1 << 20
            held = NbdClient(info["address"], info["port"], info["exportname"])
        session.xenapi.session.logout()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    with pytest.raises((NbdError, OSError)):  # the export is gone with the simulator
        held.read(0, 4096)
    held.sock.close()
    with Pool(tmp_path / "pool") as pool:  # unplugged: deactivate and detach both ran
        assert pool.records("datapath") == []
