"""The SMAPIv1 conformance suite (simulator/conformance) passes against sm_drivers/S3SR
on the real S3 server, with two hosts and a shared SR."""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# S3SR advertises snapshot, clone, resize and activate
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi"}


def test_conformance_suite_passes_on_s3(s3_env, tmp_path):
    junit = tmp_path / "conformance.xml"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    dc = ["endpoint=" + s3_env["SRKIT_S3_ENDPOINT"], "bucket=" + s3_env["SRKIT_S3_BUCKET"],
          "access_key=" + s3_env["SRKIT_S3_ACCESS_KEY"],
          "secret_key=" + s3_env["SRKIT_S3_SECRET_KEY"],
          "prefix=conformance-%s" % os.urandom(4).hex(), "cache_dir=@tmpdir",
          "chunk_size=1048576"]
    cmd = [sys.executable, "-m", "simulator.conformance.run",
           "--driver", os.path.join(REPO, "sm_drivers", "S3SR"), "--hosts", "2"]
    for item in dc:
        cmd += ["--device-config", item]
    cmd += ["--", "-q", "-p", "no:randomly", "--junitxml", str(junit),
            "--basetemp", str(tmp_path / "base")]
    proc = subprocess.run(cmd, cwd=str(tmp_path), env=env, capture_output=True, text=True,
                          timeout=1800)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    passed, skipped = [], set()
    for case in ET.parse(str(junit)).getroot().iter("testcase"):
        if case.find("skipped") is not None:
            skipped.add(case.get("name").split("[")[0])
        elif case.find("failure") is None and case.find("error") is None:
            passed.append(case.get("name"))
    assert len(passed) >= 60, passed
    assert skipped <= EXPECTED_SKIPS, skipped - EXPECTED_SKIPS
