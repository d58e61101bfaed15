"""The SMAPIv1 conformance suite (simulator/conformance) passes against
sm_drivers/GlusterSR on the real glusterd, with two hosts and a shared SR."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# GlusterSR advertises snapshot, clone and resize: only the check for drivers that
# lack one of them has nothing to test
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi"}


def test_conformance_suite_passes_on_gluster(gluster_env, tmp_path):
    junit = tmp_path / "conformance.xml"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "simulator.conformance.run",
           "--driver", os.path.join(REPO, "sm_drivers", "GlusterSR"), "--hosts", "2",
           "--device-config", "server=%s:/%s" % (gluster_env["SRKIT_GLUSTER_HOST"],
                                                 gluster_env["SRKIT_GLUSTER_VOLUME"]),
           "--device-config", "backupservers=" + gluster_env["SRKIT_GLUSTER_BRICK_HOST"],
           "--", "-q", "-p", "no:randomly", "--junitxml", str(junit),
           "--basetemp", str(tmp_path / "base")]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    passed, skipped = [], set()
    for case in ET.parse(str(junit)).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            skipped.add(case.get("name").split("[")[0])
        elif case.find("failure") is None and case.find("error") is None:
            passed.append(case.get("name"))
    assert len(passed) >= 60, passed
    assert skipped <= EXPECTED_SKIPS, skipped - EXPECTED_SKIPS
