"""Run the conformance suite in a child process and read its verdict from the junit
report: what every driver's own test (tests/<backend>/test_conformance_*.py) needs.

A child process, because the suite is a pytest session of its own (its plugin, its
rootdir, its basetemp) and must not mix with the session that asks for it.
"""
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Outcome(object):
    def __init__(self, returncode, stdout, stderr, cases):
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.cases = cases            # [(name, 'passed' | 'skipped' | 'failure' | 'error')]

    def named(self, outcome):
        return [name for name, o in self.cases if o == outcome]

    @property
    def passed(self):
        return self.named("passed")

    @property
    def skipped(self):
        """Base names (parameters stripped) of the checks that were skipped."""
        return set(name.split("[")[0] for name in self.named("skipped"))

    def tail(self):
        return self.stdout[-6000:] + self.stderr[-3000:]

    def assert_green(self, expected_skips=(), min_passed=60):
        """Every check passed or was skipped for a reason the driver's test names."""
        assert self.returncode == 0, self.tail()
        bad = self.named("failure") + self.named("error")
        assert not bad, bad
        assert len(self.passed) >= min_passed, self.passed
        unexpected = self.skipped - set(expected_skips)
        assert not unexpected, "unexpected skips: %s" % sorted(unexpected)


def run(driver, device_config, workdir, hosts=1, timeout=900, pytest_args=()):
    """The suite against `driver` (a path, or a name under sm_drivers/) with
    `device_config` ({key: value}; the value '@tmpdir' becomes a directory per SR)."""
    if os.sep not in driver:
        driver = os.path.join(REPO, "sm_drivers", driver)
    workdir = str(workdir)
    junit = os.path.join(workdir, "conformance.xml")
    cmd = [sys.executable, "-m", "simulator.conformance.run", "--driver", driver,
           "--hosts", str(hosts)]
    for key, value in device_config.items():
        cmd += ["--device-config", "%s=%s" % (key, value)]
    cmd += ["--", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
            "--junitxml", junit, "--basetemp", os.path.join(workdir, "base")]
    cmd += list(pytest_args)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=timeout)
    cases = []
    if os.path.exists(junit):
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome = "passed"
            for tag in ("failure", "error", "skipped"):
                if case.find(tag) is not None:
                    outcome = tag
            cases.append((case.get("name"), outcome))
    return Outcome(proc.returncode, proc.stdout, proc.stderr, cases)
