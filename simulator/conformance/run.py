"""``srkit conformance``: run the SMAPIv1 conformance suite against one driver.

    srkit conformance --driver PATH --device-config k=v [--device-config k=v ...]
                      [--type NAME] [--hosts N] [--shared|--no-shared]
                      [--pythonpath auto|none|PATH] [-- extra pytest arguments]

``PATH`` is the driver executable (for instance ``sm_drivers/LocalSR``). The SR
type is the file name minus ``SR``, lower-cased, as xapi derives it; ``--type``
overrides it. A device-config value ``@tmpdir`` is replaced by a fresh empty
directory for each SR the suite creates (``location=@tmpdir`` for ``local``).

``--pythonpath auto`` (the default) gives the driver a PYTHONPATH with this
repository and the XenAPI package of the running interpreter, for machines whose
system python3 has no XenAPI; ``none`` runs the driver with xapi's exact
environment.

Returns pytest's exit status (0: every check passed or was skipped).
"""
import argparse
import json
import os
import sys

SUITE_DIR = os.path.dirname(os.path.abspath(__file__))
ENV = "SRKIT_CONFORMANCE"


def _device_config(items):
    dc = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError("--device-config wants KEY=VALUE, got %r" % item)
        dc[key] = value
    return dc


def parser():
    p = argparse.ArgumentParser(
        prog="srkit conformance",
        description="Check an SMAPIv1 driver against xapi's protocol through the host "
                    "simulator. Arguments after -- go to pytest.")
    p.add_argument("--driver", required=True, help="the driver executable (e.g. FooSR)")
    p.add_argument("--device-config", action="append", default=[], metavar="KEY=VALUE",
                   help="device-config entry for the SRs (repeatable); the value @tmpdir "
                        "becomes a fresh directory per SR")
    p.add_argument("--type", help="SR type name (default: the file name minus 'SR')")
    p.add_argument("--hosts", type=int, default=1, help="simulated hosts in the pool")
    shared = p.add_mutually_exclusive_group()
    shared.add_argument("--shared", dest="shared", action="store_true", default=None,
                        help="create shared SRs (default when --hosts > 1)")
    shared.add_argument("--no-shared", dest="shared", action="store_false")
    p.add_argument("--pythonpath", default="auto",
                   help="'auto' (repo + this interpreter's XenAPI), 'none', or a path list")
    return p


def split_argv(argv):
    argv = list(argv)
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def build(argv):
    """(config dict for the plugin, pytest argv) from our command line."""
    ours, extra = split_argv(argv)
    args = parser().parse_args(ours)
    try:
        device_config = _device_config(args.device_config)
    except argparse.ArgumentTypeError as e:
        parser().error(str(e))
    driver = os.path.abspath(args.driver)
    if not os.path.isfile(driver):
        parser().error("no driver at %s" % driver)
    if not os.access(driver, os.X_OK):
        parser().error("%s is not executable (xapi would skip it)" % driver)
    if args.hosts < 1:
        parser().error("--hosts must be at least 1")
    config = {"driver": driver, "type": args.type, "device_config": device_config,
              "hosts": args.hosts, "shared": args.shared, "pythonpath": args.pythonpath}
    pytest_args = [SUITE_DIR, "-p", "simulator.conformance.plugin",
                   "-o", "python_files=check_*.py", "-p", "no:cacheprovider",
                   "--rootdir", SUITE_DIR] + extra
    return config, pytest_args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    config, pytest_args = build(argv)
    import pytest
    saved = os.environ.get(ENV)
    os.environ[ENV] = json.dumps(config)
    try:
        return int(pytest.main(pytest_args))
    finally:
        if saved is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = saved


if __name__ == "__main__":
    sys.exit(main())
