"""The SMAPIv1 conformance suite (simulator/conformance) passes against
sm_drivers/ZFSVolSR on real OpenZFS."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import REPO

# Opt-in (SRKIT_ZFS_CONFORMANCE=1, exported before ./dev test: the guest inherits it)
# until it completes green under TCG on a 2-core machine: issue 7 stays open for it.
pytestmark = [pytest.mark.zfs, pytest.mark.skipif(
    os.environ.get("SRKIT_ZFS_CONFORMANCE") != "1",
    reason="not yet green in the TCG guest (issue 7): opt in with SRKIT_ZFS_CONFORMANCE=1")]
# ZFSVolSR advertises snapshot, clone, resize and revert but no activate
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi"}


def test_conformance_suite_passes_on_zfsvol(zpool, tmp_path):
    junit = tmp_path / "conformance.xml"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "simulator.conformance.run",
           "--driver", os.path.join(REPO, "sm_drivers", "ZFSVolSR"),
           "--device-config", "pool=" + zpool,
           "--", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
           "--junitxml", str(junit), "--basetemp", str(tmp_path / "base")]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=3600)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    passed, skipped = [], set()
    for case in ET.parse(str(junit)).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            skipped.add(case.get("name").split("[")[0])
        elif case.find("failure") is None and case.find("error") is None:
            passed.append(case.get("name"))
    assert len(passed) >= 50, passed
    print("conformance: %d passed, skipped %s" % (len(passed), sorted(skipped)))
