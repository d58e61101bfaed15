"""The ``srkit`` command: its dispatcher and the subcommands that run on a host.

A host's ``/usr/bin/srkit`` (packaging/host/srkit) is :func:`main` with
:data:`HOST_SUBCOMMANDS`; a developer machine's ``srkit`` (simulator/cli.py) adds
the subcommands that drive a simulated pool and dispatches through :func:`dispatch`.

Subcommands are looked up lazily, so a command imports only what it runs. One
entry is ``"name": ("module:function", "help")``; the function takes the
remaining argv (list of str) and returns an exit status.
"""
import importlib
import sys

HOST_SUBCOMMANDS = {
    "vdi-export": ("framework.export.host:vdi_export",
                   "export a VDI (on a host through its xapi; docs/export.md)"),
    "vdi-import": ("framework.export.host:vdi_import", "import a VDI (on a host through its xapi)"),
}


def usage(subcommands, options=""):
    return ("usage: srkit %s<command> [args...]\n\ncommands:\n" % options) + "".join(
        "  %-12s %s\n" % (name, text) for name, (_, text) in subcommands.items())


def dispatch(argv, subcommands, text=None):
    """Run the subcommand that ``argv`` names; its exit status (2 for a usage error)."""
    text = text or usage(subcommands)
    if not argv or argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(text)
        return 0 if argv else 2
    if argv[0] not in subcommands:
        sys.stderr.write("srkit: unknown command %r\n\n%s" % (argv[0], text))
        return 2
    module, func = subcommands[argv[0]][0].split(":")
    return getattr(importlib.import_module(module), func)(argv[1:]) or 0


def main(argv=None):
    return dispatch(list(sys.argv[1:] if argv is None else argv), HOST_SUBCOMMANDS)


if __name__ == "__main__":
    sys.exit(main())
