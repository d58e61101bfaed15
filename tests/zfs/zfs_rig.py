"""The zfsvol tests' own helpers (conftest.py holds their fixtures)."""
import subprocess

MiB = 1024 * 1024


def sh(*argv, check=True):
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError("%s: %s" % (" ".join(argv), proc.stderr))
    return proc.stdout


def destroy_dataset(name):
    """Destroy ``name`` and all below it, and check it is gone: a fixture that could not
    clean up fails its own test instead of the next one that reuses the name. A zvol
    just closed may be held by udev for a moment ("busy"), as the driver's own destroy
    knows (drivers/zfs/cli.py): the same bounded rule here."""
    import time
    error = ""
    for _ in range(20):
        proc = subprocess.run(["zfs", "destroy", "-r", name], capture_output=True, text=True,
                              timeout=300)
        if subprocess.run(["zfs", "list", "-H", "-o", "name", name],
                          capture_output=True).returncode != 0:
            return
        error = proc.stderr.strip()
        if "busy" not in error and "in use" not in error:
            break
        time.sleep(0.3)
    raise AssertionError("cleanup: dataset %s is left behind: %s" % (name, error))
