"""``srkit xe vdi-export`` / ``vdi-import``: find the SR and VDI in the simulated
pool, then run framework.export's runner under the system python with the same
environment (lock and state directories, XenAPI socket, a session) as a driver
command on that host, as a host's ``srkit vdi-export`` does through its xapi.

For ``vdi-import sr-uuid=`` the VDI is created through the pool (as xapi would)
when the runner reports the size from the stream, and destroyed again if the
import fails.
"""
import json
import os
import socket
import subprocess
import sys

from simulator.errors import XapiError

RUNTIME_PYTHON = "/usr/bin/python3"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ExportError(Exception):
    pass


def _host_for(pool, sr):
    host = pool.sr_master_host(sr)
    pool.pbd_of(sr, host)
    return host


def _job(pool, sr, host, **fields):
    sr_rec = pool.sr_record(sr)
    job = {"sr_type": sr_rec["type"], "sr_uuid": sr_rec["uuid"], "sr_ref": sr,
           "device_config": pool.device_config_on(sr, host), "host_ref": host}
    job.update(fields)
    return job


def _filename(name):
    return name if name == "-" else os.path.abspath(name)


def run_job(pool, host, sr, job, on_control=None):
    """Run the runner for ``job``; stdin/stdout/stderr are inherited. Returns the
    exit status and the runner's last control message."""
    with pool.server.running() as socket_path:
        session = pool.session_create(sr, host)
        env = pool.driver_env(host, socket_path)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
        if os.environ.get("SRKIT_ZSTD"):  # tests pick the zstd engine with it
            env["SRKIT_ZSTD"] = os.environ["SRKIT_ZSTD"]
        job = dict(job, session_ref=session)
        ours, theirs = socket.socketpair()
        job["control_fd"] = theirs.fileno()
        last = {}
        try:
            python = os.environ.get("SRKIT_RUNTIME_PYTHON") or RUNTIME_PYTHON
            proc = subprocess.Popen([python, "-m", "framework.export", json.dumps(job)],
                                    env=env, pass_fds=(theirs.fileno(),), close_fds=True)
            theirs.close()
            lines = ours.makefile("rwb")
            for line in lines:
                message = json.loads(line.decode())
                if "virtual_size" in message:
                    try:
                        reply = on_control(message)
                    except Exception as e:  # the runner reports it and exits non-zero
                        reply = {"error": str(e)}
                    lines.write((json.dumps(reply) + "\n").encode())
                    lines.flush()
                else:
                    last = message
            status = proc.wait()
        finally:
            ours.close()
            pool.session_destroy(session)
    return status, last


def vdi_export(pool, a):
    vdi = pool.by_uuid("VDI", a.need("uuid"))
    rec = pool.vdi_record(vdi)
    sr = rec["SR"]
    fields = {"op": "export", "vdi_uuid": rec["uuid"], "vdi_location": rec["location"],
              "format": a.get("format", "raw"), "compression": a.get("compression", "zstd"),
              "filename": _filename(a.need("filename"))}
    base = a.get("base")
    if base:
        brec = pool.vdi_record(pool.by_uuid("VDI", base))
        if brec["SR"] != sr:
            raise ExportError("base %s is not in the SR of %s" % (base, rec["uuid"]))
        fields.update(base_uuid=brec["uuid"], base_location=brec["location"])
    host = _host_for(pool, sr)
    status, _ = run_job(pool, host, sr, _job(pool, sr, host, **fields))
    if status:
        raise ExportError("vdi-export failed (status %d)" % status)
    return ""


def vdi_import(pool, a):
    filename = _filename(a.need("filename"))
    fmt = a.get("format", "")
    if a.get("uuid"):
        vdi = pool.by_uuid("VDI", a.need("uuid"))
        rec = pool.vdi_record(vdi)
        host = _host_for(pool, rec["SR"])
        status, _ = run_job(pool, host, rec["SR"], _job(
            pool, rec["SR"], host, op="import", vdi_uuid=rec["uuid"],
            vdi_location=rec["location"], filename=filename, format=fmt))
        if status:
            raise ExportError("vdi-import failed (status %d)" % status)
        pool.sr_update(rec["SR"])
        return ""
    sr = pool.by_uuid("SR", a.need("sr-uuid"))
    label = a.get("name-label", "imported")
    host = _host_for(pool, sr)
    created = []

    def create(message):
        ref = pool.vdi_create(sr, int(message["virtual_size"]), name_label=label)
        created.append(ref)
        new = pool.vdi_record(ref)
        return {"uuid": new["uuid"], "location": new["location"]}
    status, last = run_job(pool, host, sr, _job(pool, sr, host, op="import", filename=filename,
                                                format=fmt, create=True), create)
    if status or not last.get("done"):
        for ref in created:
            try:
                pool.vdi_destroy(ref)
            except XapiError as e:
                sys.stderr.write("could not remove the new VDI again: %s %s\n"
                                 % (e.code, e.params))
        raise ExportError("vdi-import failed (status %d)%s" % (
            status, "; the new VDI was removed" if created else ""))
    pool.sr_update(sr)
    return pool.vdi_record(created[0])["uuid"] + "\n"


