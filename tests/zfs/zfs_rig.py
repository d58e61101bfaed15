"""The zfsvol tests' own helpers (conftest.py holds their fixtures)."""
import subprocess

MiB = 1024 * 1024


def sh(*argv, check=True):
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(argv), proc.stderr))
    return proc.stdout
