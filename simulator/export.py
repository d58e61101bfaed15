"""``srkit xe vdi-export`` / ``vdi-import``: the host's own command
(``python3 -m framework.export.host``, docs/export.md) run under the system python
on the SR's master host, against the simulator's XenAPI socket with that host's
environment (lock and state directories), as a host's ``srkit vdi-export`` runs
against its xapi. Finding the VDI and the PBD, the transfer job, creating the VDI
for ``sr-uuid=`` (``VDI.create``, see simulator/xapi_client.py) and removing it
again when the import fails all happen there, once for both.

The one thing done here is choosing the host: the session handed to the command
(``--session``) has that host as its ``this_host`` and is tagged for the SR, as
the sessions the simulator gives drivers are.
"""
import os
import subprocess

RUNTIME_PYTHON = "/usr/bin/python3"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ExportFailed(Exception):
    """The command failed and has said why on stderr; ``status`` is its exit status."""

    def __init__(self, status):
        Exception.__init__(self, "exit status %d" % status)
        self.status = status


def _sr_of(pool, command, a):
    if command == "vdi-import" and not a.get("uuid"):
        return pool.by_uuid("SR", a.need("sr-uuid"))
    return pool.vdi_record(pool.by_uuid("VDI", a.need("uuid")))["SR"]


def run(pool, command, a):
    """Run ``command`` (vdi-export / vdi-import) with xe's arguments ``a``; stdin,
    stdout (the new VDI's uuid) and stderr are the command's own."""
    sr = _sr_of(pool, command, a)
    host = pool.sr_master_host(sr)
    argv = [os.environ.get("SRKIT_RUNTIME_PYTHON") or RUNTIME_PYTHON,
            "-m", "framework.export.host", command]
    argv += ["%s=%s" % kv for kv in sorted(a.plain.items())]
    with pool.server.running() as socket_path:
        session = pool.session_create(sr, host)
        try:
            env = pool.driver_env(host, socket_path)
            env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
            if os.environ.get("SRKIT_ZSTD"):  # tests pick the zstd engine with it
                env["SRKIT_ZSTD"] = os.environ["SRKIT_ZSTD"]
            status = subprocess.call(argv + ["--session", session], env=env, close_fds=True)
        finally:
            pool.session_destroy(session)
    if status:
        raise ExportFailed(status)
    return ""
