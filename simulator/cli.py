"""The ``srkit`` console script (``srkit = simulator.cli:main``): the host's
command (framework/cli.py: its dispatcher and the subcommands that run on a host)
plus the subcommands that drive a simulated pool.

Subcommands are looked up lazily in SUBCOMMANDS, so ``srkit xe sr-list`` imports
nothing it does not need. To add one, add a line ``"name": ("module:function",
"help")``; the function takes the remaining argv (list of str) and returns an exit
status. The pool directory is ``--pool DIR``, else ``$SRKIT_POOL``, else
``~/.srkit/pool``; :func:`pool_dir` gives it to subcommands (``--pool`` is also
exported as ``SRKIT_POOL``).
"""
import argparse
import os
import sys

from framework import cli as host_cli

SUBCOMMANDS = {
    "xe": ("simulator.xe:main", "xe-compatible commands against the simulated pool"),
    "serve": ("simulator.serve:main", "serve the pool's XenAPI over HTTP on 127.0.0.1 "
                                      "(for XenAPI clients: backup tools)"),
    "pool-init": ("simulator.cli:pool_init", "create (or extend) a simulated pool"),
    "demo": ("simulator.demo:main", "the main job end to end on the embedded `local` backend"),
    "conformance": ("simulator.conformance.run:main", "run the conformance suite against a driver"),
    "docs": ("simulator.docgen:main", "print (or --write) docs/device-config.md"),
}
# what a host's srkit has (against a simulated pool: `srkit xe vdi-export`)
SUBCOMMANDS.update(host_cli.HOST_SUBCOMMANDS)


def pool_dir():
    return os.environ.get("SRKIT_POOL") or os.path.join(os.path.expanduser("~"), ".srkit",
                                                        "pool")


def pool_init(argv):
    p = argparse.ArgumentParser(prog="srkit pool-init",
                                description="Create a simulated pool in the pool directory.")
    p.add_argument("--hosts", type=int, default=1, help="number of hosts (host 0 is master)")
    p.add_argument("--sm-dir", help="driver directory (default: the repo's sm_drivers)")
    p.add_argument("--sm-plugins", help="whitelist, space separated (default '*')")
    p.add_argument("--pythonpath", help="PYTHONPATH for drivers; 'auto' = repo + XenAPI")
    p.add_argument("--env", action="append", default=[], metavar="K=V",
                   help="extra environment variable for drivers (repeatable)")
    args = p.parse_args(argv)
    from simulator.pool import Pool
    extra = dict(kv.split("=", 1) for kv in args.env) or None
    with Pool(pool_dir(), sm_dir=args.sm_dir, hosts=args.hosts, sm_plugins=args.sm_plugins,
              extra_env=extra, pythonpath=args.pythonpath) as pool:
        rejected = pool.discover()
        print("pool %s: %d host(s), drivers: %s" % (
            pool.path, len(pool.hosts),
            " ".join(sorted(r["type"] for r in pool.records("SM"))) or "(none)"))
        for name, reason in sorted(rejected.items()):
            print("  skipped %s: %s" % (name, reason))
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = host_cli.usage(SUBCOMMANDS, "[--pool DIR] ")
    while argv and argv[0].startswith("--pool"):
        opt = argv.pop(0)
        if "=" in opt:
            os.environ["SRKIT_POOL"] = opt.split("=", 1)[1]
        elif argv:
            os.environ["SRKIT_POOL"] = argv.pop(0)
        else:
            sys.stderr.write(usage)
            return 2
    return host_cli.dispatch(argv, SUBCOMMANDS, usage)


if __name__ == "__main__":
    sys.exit(main())
