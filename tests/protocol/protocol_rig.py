"""The protocol-test rig: sm_drivers/LocalSR run exactly as xapi runs it (through
the host simulator, or with a raw argv document). Fixtures are in conftest.py."""
import os
import subprocess
import xmlrpc.client

from simulator import sm_exec
from simulator.driver_calls import runtime_pythonpath
from simulator.pool import Pool

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCALSR = os.path.join(REPO, "sm_drivers", "LocalSR")
REQUESTS = os.path.join(REPO, "tests", "fixtures", "requests")
MiB = 1024 * 1024


def parse(stdout):
    """(value, None) or (None, (faultCode, faultString)); AssertionError unless stdout
    is exactly one well-formed methodResponse."""
    try:
        params, method = xmlrpc.client.loads(stdout)
    except xmlrpc.client.Fault as f:
        assert isinstance(f.faultCode, int) and isinstance(f.faultString, str)
        return None, (f.faultCode, f.faultString)
    except Exception as e:
        raise AssertionError("stdout is not one methodResponse (%s): %r" % (e, stdout))
    assert method is None and len(params) == 1, stdout
    return params[0], None


def checked(rc, out, err):
    """The xapi-facing rules for any reply: exit 0, clean stderr, one document."""
    assert rc == 0, "exit status %r, stderr %r" % (rc, err)
    assert err == "", "stderr must stay empty: %r" % err
    return parse(out)


def backend_listing(root):
    """Every path under ``root`` (relative), to prove a failed call created nothing."""
    out = []
    for base, dirs, files in os.walk(root):
        rel = os.path.relpath(base, root)
        out.extend(os.path.normpath(os.path.join(rel, n)) for n in dirs + files)
    return sorted(out)


class Local:
    """A pool with LocalSR and one SR on a temporary directory."""

    def __init__(self, base, hosts=1):
        self.base = str(base)
        self.sm_dir = os.path.join(self.base, "sm")
        os.makedirs(self.sm_dir)
        os.symlink(LOCALSR, os.path.join(self.sm_dir, "LocalSR"))
        self.location = os.path.join(self.base, "data")
        os.makedirs(self.location)
        self.pool = Pool(os.path.join(self.base, "pool"), sm_dir=self.sm_dir, hosts=hosts,
                         pythonpath="auto")
        self.sr = self.pool.sr_create("local", {"location": self.location}, name_label="sr")
        self.sr_uuid = self.pool.sr_record(self.sr)["uuid"]
        self.sr_dir = os.path.join(self.location, self.sr_uuid)

    @property
    def smlog(self):
        path = os.path.join(self.pool.path, "SMlog")
        return open(path).read() if os.path.exists(path) else ""

    @property
    def lock_dir(self):
        return self.pool.host_dirs(self.pool.master)["lock"]

    def listing(self):
        return backend_listing(self.location)

    def vdi_uuids(self):
        return sorted(r["uuid"] for r in self.pool.records("VDI") if r["SR"] == self.sr)

    def keys(self, vdi=None, **extra):
        """The request keys xapi would send for this SR (and VDI), fresh session."""
        keys = dict(host_ref=self.pool.master,
                    device_config={"SRmaster": "true", "location": self.location},
                    session_ref=self.pool.session_create(self.sr), sr_ref=self.sr,
                    sr_uuid=self.sr_uuid)
        if vdi is not None:
            rec = self.pool.vdi_record(vdi)
            keys.update(vdi_ref=vdi, vdi_location=rec["location"], vdi_uuid=rec["uuid"],
                        vdi_on_boot="persist", vdi_allow_caching="false")
        keys.update(extra)
        return keys

    def document(self, command, args=(), vdi=None, **extra):
        keys = self.keys(vdi, **extra)
        keys["args"] = list(args)
        return sm_exec.encode_call(command, sm_exec.build_request(command, **keys))

    def raw(self, document):
        return checked(*self.pool.run_raw("local", document))

    def env(self):
        dirs = self.pool.host_dirs(self.pool.master)
        return sm_exec.driver_env({"SRKIT_LOCK_DIR": dirs["lock"],
                                   "SRKIT_STATE_DIR": dirs["state"],
                                   "SRKIT_LOG_FILE": os.path.join(self.pool.path, "SMlog")},
                                  None, runtime_pythonpath())

    def run_argv(self, argv):
        """Run LocalSR with an arbitrary argv tail (xapi always passes exactly one)."""
        proc = subprocess.run([LOCALSR] + list(argv), stdin=subprocess.DEVNULL,
                              capture_output=True, env=self.env())
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()

    def close(self):
        pool = self.pool
        for rec in pool.records("datapath"):
            try:
                pool.vdi_detach(rec["VDI"], host=rec["host"])
            except Exception:
                pass
        pool.close()


def fixture_document(name):
    with open(os.path.join(REQUESTS, name + ".xml"), "rb") as f:
        return f.read().decode("utf-8")
