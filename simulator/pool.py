"""The simulated pool: xapi's storage flows on top of the database, the XenAPI
server and the driver runner. This is the Python API used by tests, the
conformance suite, the demo and benchmarks; ``srkit xe`` is a thin layer over it.

A pool lives in a directory::

    pool.db       the XenAPI objects (SQLite)
    pool.json     settings (sm_dir, sm_plugins, extra_env, pythonpath)
    SMlog         what drivers log (SRKIT_LOG_FILE)
    xensource.log what the simulator itself logs (discovery, calls, errors)
    hosts/<host uuid prefix>/{lock,state}   per-host SRKIT_LOCK_DIR / SRKIT_STATE_DIR
"""
import json
import os
import threading
import time
import uuid as uuidlib

from framework.options import SR_MASTER, device_config_of_call
from simulator import cbt
from simulator.db import DB, NULL_REF, VDI_TYPES
from simulator.driver_calls import REPO, DriverCalls
from simulator.errors import XapiError
from simulator.nbd import NbdExports
from simulator.sm_registry import SmRegistry
from simulator.xapi_api import now_iso
from simulator.xapi_client import ClientCalls
from simulator.xapi_server import XapiServer

DEFAULT_SM_DIR = os.path.join(REPO, "sm_drivers")


class Pool(SmRegistry, DriverCalls):
    """A pool of ``hosts`` simulated hosts; host 0 is the master.

    ``sm_dir``, ``sm_plugins`` (space-separated whitelist, ``*`` = all),
    ``extra_env`` (dict added to every driver's environment) and ``pythonpath``
    (``None``, a path string, or ``"auto"`` for
    :func:`simulator.driver_calls.runtime_pythonpath`) are
    remembered in ``pool.json``; arguments given here override and update them.
    """

    def __init__(self, path, sm_dir=None, hosts=1, sm_plugins=None, extra_env=None,
                 pythonpath=None):
        self.path = os.path.abspath(str(path))
        os.makedirs(self.path, exist_ok=True)
        self.config = self._load_config(sm_dir=sm_dir, sm_plugins=sm_plugins,
                                        extra_env=extra_env, pythonpath=pythonpath)
        self.db = DB(os.path.join(self.path, "pool.db"))
        self.server = XapiServer(self.db, self.path, log=self.log, client=ClientCalls(self))
        self.nbd = NbdExports(self)  # VDI.get_nbd_info's servers (none until asked)
        self.calls = []  # CallRecords of this Pool object, oldest first (bounded)
        self._locks = {}
        self._locks_guard = threading.Lock()
        self._ensure_hosts(hosts or 1)

    # -- settings, hosts, logging ---------------------------------------------
    def _load_config(self, **given):
        cfg_path = os.path.join(self.path, "pool.json")
        cfg = {"sm_dir": DEFAULT_SM_DIR, "sm_plugins": "*", "extra_env": {}, "pythonpath": None}
        if os.path.exists(cfg_path):
            with open(cfg_path) as f:
                cfg.update(json.load(f))
        changed = not os.path.exists(cfg_path)
        for key, value in given.items():
            if value is not None and cfg.get(key) != value:
                cfg[key] = os.path.abspath(value) if key == "sm_dir" else value
                changed = True
        if changed:
            with open(cfg_path, "w") as f:
                json.dump(cfg, f, indent=1)
        return cfg

    def _ensure_hosts(self, n):
        with self.db.transaction():
            pools = self.db.refs("pool")
            existing = self.db.refs("host")
            for i in range(len(existing), n):
                existing.append(self.db.create(
                    "host", name_label="host%d" % i, hostname="host%d" % i,
                    address="127.0.0.%d" % (i + 1)))
            if not pools:
                self.db.create("pool", master=existing[0])

    @property
    def hosts(self):
        return self.db.refs("host")

    @property
    def master(self):
        return self.db.get("pool", self.db.refs("pool")[0])["master"]

    def host_dirs(self, host):
        base = os.path.join(self.path, "hosts", self.db.get("host", host)["uuid"][:8])
        dirs = {"lock": os.path.join(base, "lock"), "state": os.path.join(base, "state")}
        for d in dirs.values():
            os.makedirs(d, exist_ok=True)
        return dirs

    def log(self, msg):
        with open(os.path.join(self.path, "xensource.log"), "a") as f:
            f.write("%s [%d] %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), os.getpid(), msg))

    def _lock(self, key):
        with self._locks_guard:
            return self._locks.setdefault(key, threading.RLock())

    # -- records ----------------------------------------------------------------
    def record(self, cls, ref):
        return self.db.get(cls, ref)

    def vdi_record(self, ref):
        return self.db.get("VDI", ref)

    def sr_record(self, ref):
        return self.db.get("SR", ref)

    def records(self, cls):
        """All records of a class (``VDI``, ``SR``, ``PBD``, ``host``, ``SM``, ...)."""
        return [rec for _, rec in self.db.all(cls)]

    def find(self, cls, **fields):
        """Refs of the objects of ``cls`` whose fields equal ``fields``."""
        return self.db.find(cls, **fields)

    def by_uuid(self, cls, uuid):
        return self.db.by_uuid(cls, uuid)

    def secret_create(self, value):
        return self.db.get("secret", self.db.create("secret", value=str(value)))["uuid"]

    # -- SR flows ------------------------------------------------------------------
    def sr_create(self, type, device_config, name_label="", shared=False, physical_size=0,
                  host=None, name_description="", content_type="", sm_config=None):
        """``xe sr-create``: records first, sr_create on the chosen host, device_config
        written back to every PBD, then every PBD plugged (master first)."""
        self._sm(type)
        host = host or self.master
        sr = self.db.create("SR", name_label=name_label, name_description=name_description,
                            type=type, shared=bool(shared), content_type=content_type,
                            sm_config=dict(sm_config or {}),
                            physical_size=str(int(physical_size)))
        targets = self.hosts if shared else [host]
        targets = sorted(targets, key=lambda h: h != self.master)
        pbds = [self.db.create("PBD", host=h, SR=sr, device_config=dict(device_config))
                for h in targets]
        try:
            self.call("sr_create", host=host, sr=sr, args=[str(int(physical_size))],
                      device_config=device_config_of_call(device_config, True))
        except Exception:
            for pbd in pbds:
                self.db.delete("PBD", pbd)
            self.db.delete("SR", sr)
            raise
        final = self.db.get("PBD", self.pbd_of(sr, host))["device_config"]
        final = {k: v for k, v in final.items() if k != SR_MASTER}
        for pbd in pbds:
            self.db.update("PBD", pbd, device_config=final)
        for pbd in pbds:
            self.pbd_plug(pbd)
        return sr

    def sr_probe(self, type, device_config, sm_config=None, host=None):
        """``xe sr-probe``: returns the XML document (a string) the driver produced."""
        self._require(type, "sr_probe")
        host = host or self.master
        with self._lock(("attach", host)):
            return self.call("sr_probe", host=host, sr_type=type,
                             device_config=device_config_of_call(device_config, True),
                             sr_sm_config=dict(sm_config or {}))

    def sr_introduce(self, uuid, type, name_label="", shared=False, name_description="",
                     content_type="", sm_config=None):
        if self.db.find("SR", uuid=uuid):
            raise XapiError("UUID_INVALID", ["SR", uuid])
        return self.db.create("SR", uuid=uuid, type=type, name_label=name_label,
                              name_description=name_description, shared=bool(shared),
                              content_type=content_type, sm_config=dict(sm_config or {}))

    def pbd_create(self, host, sr, device_config):
        self.db.get("host", host)
        self.db.get("SR", sr)
        return self.db.create("PBD", host=host, SR=sr, device_config=dict(device_config))

    def pbd_plug(self, pbd):
        rec = self.db.get("PBD", pbd)
        if rec["currently_attached"]:
            return
        with self._lock(("attach", rec["host"])), self._lock(("sr", rec["SR"])):
            self.call("sr_attach", host=rec["host"], sr=rec["SR"])
            self.db.update("PBD", pbd, currently_attached=True)

    def pbd_unplug(self, pbd):
        rec = self.db.get("PBD", pbd)
        if not rec["currently_attached"]:
            return
        sr_vdis = set(self.db.get("SR", rec["SR"])["VDIs"])
        for _, dp in self.db.all("datapath"):
            if dp["host"] == rec["host"] and dp["VDI"] in sr_vdis:
                raise XapiError("VDI_IN_USE", [dp["VDI"], "PBD.unplug"])
        with self._lock(("attach", rec["host"])), self._lock(("sr", rec["SR"])):
            self.call("sr_detach", host=rec["host"], sr=rec["SR"])
            self.db.update("PBD", pbd, currently_attached=False)

    def sr_scan(self, sr):
        self._require(self.db.get("SR", sr)["type"], "sr_scan", sr)
        self.call("sr_scan", sr=sr)

    def sr_update(self, sr):
        self._require(self.db.get("SR", sr)["type"], "sr_update", sr)
        self.call("sr_update", sr=sr)

    def _assert_unplugged(self, sr):
        for pbd in self.db.get("SR", sr)["PBDs"]:
            if self.db.get("PBD", pbd)["currently_attached"]:
                raise XapiError("SR_HAS_PBD", [sr])

    def sr_forget(self, sr):
        """Remove the SR, its PBDs and VDIs from the database (no driver call)."""
        self._assert_unplugged(sr)
        rec = self.db.get("SR", sr)
        with self.db.transaction():
            for vdi in rec["VDIs"]:
                self.db.delete("VDI", vdi)
            for pbd in rec["PBDs"]:
                self.db.delete("PBD", pbd)
            self.db.delete("SR", sr)

    def sr_destroy(self, sr):
        """sr_delete on the SR master (PBDs must be unplugged), then forget."""
        self._assert_unplugged(sr)
        self._require(self.db.get("SR", sr)["type"], "sr_delete", sr)
        self.call("sr_delete", sr=sr)
        self.sr_forget(sr)

    # -- VDI flows ---------------------------------------------------------------------
    def _vdi_op(self, vdi, op, **kwargs):
        sr = self.db.get("VDI", vdi)["SR"]
        self._require(self.db.get("SR", sr)["type"], op, sr)
        with self._lock(("vdi", vdi)):
            return self.call(op, vdi=vdi, **kwargs)

    def vdi_create(self, sr, virtual_size, name_label="", name_description="", type="user",
                   sm_config=None, read_only=False, sharable=False, other_config=None,
                   uuid=None):
        """``xe vdi-create``: vdi_create on the SR master, then the VDI is found by
        uuid (the driver must have db_introduced it) and xapi's own fields set."""
        if type not in VDI_TYPES or type == "cbt_metadata":
            raise XapiError("VDI_INCOMPATIBLE_TYPE", ["", type])
        self._require(self.db.get("SR", sr)["type"], "vdi_create", sr)
        info = self.call("vdi_create", sr=sr, args=[
            str(int(virtual_size)), name_label, name_description, "", "false",
            "19700101T00:00:00Z", "", "true" if read_only else "false"],
            vdi_type=type, vdi_sm_config=dict(sm_config or {}), vdi_uuid=uuid)
        vdi = self.db.by_uuid("VDI", info["uuid"])
        self.db.update("VDI", vdi, other_config=dict(other_config or {}),
                       sharable=bool(sharable))
        return vdi

    def vdi_introduce(self, sr, uuid, location, sm_config=None):
        self._require(self.db.get("SR", sr)["type"], "vdi_introduce", sr)
        info = self.call("vdi_introduce", sr=sr, new_uuid=uuid, vdi_location=location,
                         vdi_sm_config=dict(sm_config or {}))
        return self.db.by_uuid("VDI", info["uuid"])

    def _snapshot_or_clone(self, vdi, op, driver_params):
        orig = cbt.assert_operation(self, vdi, op[4:])
        info = self._vdi_op(vdi, op, driver_params=dict(driver_params or {}))
        found = self.db.find("VDI", SR=orig["SR"], location=info["location"])
        if not found:
            raise XapiError("VDI_MISSING", [orig["SR"], info["location"]])
        new = found[0]
        content_id = orig["other_config"].get("content_id") or str(uuidlib.uuid4())
        is_snapshot = op == "vdi_snapshot"

        def follow_up(rec):
            rec.update(name_label=orig["name_label"], name_description=orig["name_description"],
                       snapshot_time=now_iso(), is_a_snapshot=is_snapshot, type=orig["type"],
                       snapshot_of=vdi if is_snapshot else NULL_REF)
            rec["other_config"]["content_id"] = content_id
            if "base_mirror" in (driver_params or {}):
                rec["sm_config"]["base_mirror"] = driver_params["base_mirror"]
        self.db.mutate("VDI", new, follow_up)
        if "VDI_UPDATE" in self.features(self.db.get("SR", orig["SR"])["type"]):
            self.vdi_update(new)
        return new

    def vdi_snapshot(self, vdi, driver_params=None):
        return self._snapshot_or_clone(vdi, "vdi_snapshot", driver_params)

    def vdi_clone(self, vdi, driver_params=None):
        return self._snapshot_or_clone(vdi, "vdi_clone", driver_params)

    def vdi_resize(self, vdi, size):
        """vdi_resize, then virtual_size re-read from the database (returned, int)."""
        cbt.assert_operation(self, vdi, "resize")
        self._vdi_op(vdi, "vdi_resize", args=[str(int(size))])
        return int(self.db.get("VDI", vdi)["virtual_size"])

    def vdi_destroy(self, vdi):
        self.nbd.close(vdi)  # an NBD export ends with its VDI (its attach would block us)
        for _, dp in self.db.all("datapath"):
            if dp["VDI"] == vdi:
                raise XapiError("VDI_IN_USE", [vdi, "destroy"])
        self._vdi_op(vdi, "vdi_delete")

    # -- changed block tracking (simulator/cbt.py has xapi's checks) -----------------
    def vdi_enable_cbt(self, vdi):
        cbt.set_enabled(self, vdi, True)

    def vdi_disable_cbt(self, vdi):
        cbt.set_enabled(self, vdi, False)

    def vdi_data_destroy(self, vdi):
        cbt.data_destroy(self, vdi)

    def vdi_list_changed_blocks(self, vdi_from, vdi_to):
        """The driver's base64 bitmap (one bit per 64 KiB of ``vdi_to``)."""
        return cbt.list_changed_blocks(self, vdi_from, vdi_to)

    def vdi_update(self, vdi):
        self._vdi_op(vdi, "vdi_update")

    def vdi_revert(self, snapshot):
        """vdi_revert with vdi_ref = the snapshot, args = [the VDI it is a snapshot of]."""
        rec = self.db.get("VDI", snapshot)
        if "VDI_REVERT" not in self.features(self.db.get("SR", rec["SR"])["type"]):
            raise XapiError("SR_OPERATION_NOT_SUPPORTED", [rec["SR"]])
        self.db.get("VDI", rec["snapshot_of"])  # HANDLE_INVALID if not a snapshot
        self._vdi_op(snapshot, "vdi_revert", args=[rec["snapshot_of"]])

    def vdi_generate_config(self, vdi, host=None):
        return self._vdi_op(vdi, "vdi_generate_config", host=host)

    def vdi_attach(self, vdi, host=None, writable=True):
        """A dom0 plug: vdi_attach [rw], then vdi_activate [rw] if the SM has
        VDI_ACTIVATE. Returns the attach struct."""
        host = host or self.master
        rw = "true" if writable else "false"
        cbt.assert_operation(self, vdi, "attach")
        features = self.features(self.db.get("SR", self.db.get("VDI", vdi)["SR"])["type"])
        with self._lock(("vdi", vdi)):
            result = self.call("vdi_attach", host=host, vdi=vdi, args=[rw])
            known = self.db.find("datapath", VDI=vdi, host=host)
            dp = known[0] if known else self.db.create("datapath", VDI=vdi, host=host,
                                                       writable=bool(writable))
            if "VDI_ACTIVATE" in features:
                try:
                    self.call("vdi_activate", host=host, vdi=vdi, args=[rw])
                except XapiError:
                    # xapi unwinds a failed plug: detach, and no datapath is left
                    if not known:
                        try:
                            self.call("vdi_detach", host=host, vdi=vdi)
                        except XapiError:
                            pass
                        self.db.delete("datapath", dp)
                    raise
                self.db.update("datapath", dp, active=True)
        return result

    def vdi_detach(self, vdi, host=None):
        """vdi_deactivate (if the SM has VDI_DEACTIVATE), then vdi_detach."""
        host = host or self.master
        features = self.features(self.db.get("SR", self.db.get("VDI", vdi)["SR"])["type"])
        with self._lock(("vdi", vdi)):
            if "VDI_DEACTIVATE" in features:
                self.call("vdi_deactivate", host=host, vdi=vdi)
            self.call("vdi_detach", host=host, vdi=vdi)
            for dp in self.db.find("datapath", VDI=vdi, host=host):
                self.db.delete("datapath", dp)

    def close(self):
        self.nbd.close_all()
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
