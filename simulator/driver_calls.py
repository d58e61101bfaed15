"""One driver invocation as xapi makes it: the keys it fills from the database,
the session it opens for the driver, the host that plays SR master, and the
environment the process gets (the simulator's documented hooks on top of xapi's).
The process itself is run by :mod:`simulator.sm_exec`."""
import os
from contextlib import ExitStack

from framework import options
from simulator import sm_exec
from simulator.db import NULL_REF
from simulator.errors import XapiError
from simulator.xapi_api import now_iso

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runtime_pythonpath():
    """A PYTHONPATH that lets drivers import the repo and the XenAPI package of the
    interpreter running the simulator. Only used when a caller asks for it
    (``Pool(..., pythonpath=runtime_pythonpath())`` or ``pythonpath="auto"``)."""
    parts = [REPO]
    try:
        import XenAPI
        parts.append(os.path.dirname(os.path.dirname(os.path.abspath(XenAPI.__file__))))
    except ImportError:
        pass
    return os.pathsep.join(parts)


class DriverCalls:
    """Mixin for :class:`simulator.pool.Pool`: needs ``db``, ``server``, ``config``,
    ``path``, ``calls``, ``log``, ``master``, ``host_dirs`` and ``_sm``."""

    @property
    def last_call(self):
        return self.calls[-1] if self.calls else None

    def driver_env(self, host, socket_path):
        """The environment of a driver process on ``host``: xapi's, plus the simulator's
        hooks (its XenAPI socket, lock, state and log locations)."""
        dirs = self.host_dirs(host)
        hooks = {"SRKIT_XAPI_SOCKET": socket_path or "", "SRKIT_LOCK_DIR": dirs["lock"],
                 "SRKIT_STATE_DIR": dirs["state"],
                 "SRKIT_LOG_FILE": os.path.join(self.path, "SMlog")}
        pp = self.config.get("pythonpath")
        if pp == "auto":
            pp = runtime_pythonpath()
        return sm_exec.driver_env(hooks, self.config.get("extra_env"), pp)

    def _exec(self, executable, command, keys, host, sr_ref=None, vdi_ref=None,
              document=None, check=True):
        """Run one driver command with a fresh session (none for sr_get_driver_info)."""
        with ExitStack() as stack:
            socket_path = None
            if command != "sr_get_driver_info" or document is not None:
                socket_path = stack.enter_context(self.server.running())
            if command != "sr_get_driver_info" and "session_ref" not in keys \
                    and document is None:
                keys["session_ref"] = self.session_create(sr_ref, host)
                stack.callback(self.session_destroy, keys["session_ref"])
            request = {}
            if document is None:
                keys.setdefault("subtask_of", sm_exec.subtask_of(command))
                request = sm_exec.build_request(command, **keys)
                document = sm_exec.encode_call(command, request)
            rec = sm_exec.run(executable, document, self.driver_env(host, socket_path), command)
        rec.host, rec.request = host, request
        self.calls.append(rec)
        del self.calls[:-200]
        self.log("%s on %s: rc=%s %.3fs stderr=%r" % (command, host, rec.returncode,
                                                     rec.seconds, rec.stderr[-500:]))
        if check:
            try:
                rec.result = sm_exec.check_shape(
                    command, rec, sm_exec.parse_reply(rec, sr_ref or "", vdi_ref or ""))
            except XapiError as e:
                rec.error = e
                raise
        return rec

    def session_destroy(self, session):
        """End a session made by ``session_create`` (unless the driver logged it out)."""
        try:
            self.db.delete("session", session)
        except XapiError:
            pass  # the driver logged out itself

    def sr_master_host(self, sr):
        """The host where SRmaster=true: the pool master for a shared SR, else the
        host of its (only) PBD."""
        rec = self.db.get("SR", sr)
        pbd_host = self.db.get("PBD", rec["PBDs"][0])["host"] if rec["PBDs"] else None
        return options.sr_master_host(rec["shared"], self.master, pbd_host)

    def pbd_of(self, sr, host):
        """The PBD joining ``sr`` to ``host``; SR_NO_PBDS if there is none."""
        refs = self.db.find("PBD", SR=sr, host=host)
        if not refs:
            raise XapiError("SR_NO_PBDS", [sr])
        return refs[0]

    def device_config_on(self, sr, host):
        """The device-config xapi gives a driver on ``host`` for ``sr``: its PBD's, with
        SRmaster first (as xapi puts it), true on the SR's master host."""
        dc = self.db.get("PBD", self.pbd_of(sr, host))["device_config"]
        return options.device_config_of_call(dc, self.sr_master_host(sr) == host)

    def call(self, command, host=None, sr=None, vdi=None, args=(), device_config=None,
             **extra_keys):
        """Low-level: send one command as xapi would and return the parsed reply.

        Fills ``host_ref``, ``device_config`` (this host's PBD + ``SRmaster``
        first), ``session_ref``, ``sr_ref``/``sr_uuid``, the vdi keys from the VDI
        record and ``subtask_of``; ``extra_keys`` (e.g. ``vdi_type``,
        ``driver_params``, ``vdi_sm_config``, ``sr_sm_config``, ``new_uuid``,
        ``vdi_location``) are added in xapi's key order. Without ``sr``/``vdi``,
        pass ``sr_type=`` to pick the driver (e.g. for ``sr_probe``; it is not
        sent). The result is checked against the command's reply shape; the raw
        invocation is in ``last_call``. Refuses master-only
        commands where SRmaster is not true (xapi would redirect to the master).
        """
        if vdi is not None and sr is None:
            sr = self.db.get("VDI", vdi)["SR"]
        host = host or (self.sr_master_host(sr) if sr else self.master)
        sr_rec = self.db.get("SR", sr) if sr else None
        sm_type = sr_rec["type"] if sr_rec else extra_keys.pop("sr_type", None)
        if sm_type is None:
            raise XapiError("SR_UNKNOWN_DRIVER", [""])
        sm = self._sm(sm_type)
        if device_config is None:
            device_config = self.device_config_on(sr, host) if sr else {}
        if options.SR_MASTER not in device_config:
            device_config = options.device_config_of_call(device_config, command in (
                "sr_create", "sr_probe") or (sr is not None and self.sr_master_host(sr) == host))
        if command in sm_exec.MASTER_ONLY and not options.is_sr_master(device_config):
            raise XapiError("HOST_IS_SLAVE", [self.db.get("host", self.master)["address"]])
        keys = {"host_ref": host, "args": list(args), "device_config": device_config}
        if sr:
            keys.update(sr_ref=sr, sr_uuid=sr_rec["uuid"])
        if vdi:
            vrec = self.db.get("VDI", vdi)
            keys.update(vdi_ref=vdi, vdi_location=vrec["location"], vdi_uuid=vrec["uuid"],
                        vdi_on_boot=vrec["on_boot"],
                        vdi_allow_caching="true" if vrec["allow_caching"] else "false")
        local_cache = self.db.get("host", host)["local_cache_sr"]
        if local_cache != NULL_REF and (sr or vdi):
            keys["local_cache_sr"] = self.db.get("SR", local_cache)["uuid"]
        keys.update(extra_keys)
        return self._exec(sm["driver_filename"], command, keys, host, sr_ref=sr,
                          vdi_ref=vdi).result

    def run_raw(self, type_or_path, document, host=None):
        """Run a driver with an arbitrary argv document (no session is created; the
        XenAPI server is live). Returns ``(returncode, stdout, stderr)``."""
        path = type_or_path if os.sep in str(type_or_path) \
            else self._sm(type_or_path)["driver_filename"]
        rec = self._exec(path, "raw", {}, host or self.master, document=document, check=False)
        return rec.returncode, rec.stdout, rec.stderr

    def session_create(self, sr=None, host=None):
        """A session as xapi creates for a driver call (tagged for ``sr``); raw runs
        get none from :meth:`run_raw`, so they open one with this."""
        return self.db.create("session", this_host=host or self.master,
                              other_config={"_sm_session": sr} if sr else {},
                              auth_user_name="__sm__backend", last_active=now_iso())
