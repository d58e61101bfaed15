"""Run an SMAPIv1 driver exactly as xapi 26.1.4's ``sm_exec.ml`` does.

Request (smapiv1.md §1.6, §2): one XML-RPC ``methodCall`` document, no prologue,
no whitespace, strings without ``<string>``, ``<value/>`` for "", ``<struct/>``
for {}, ``<array><data/></array>`` for []; keys in xapi's order; passed as the
single argv entry after the executable; nothing on stdin.

Environment: xapi passes only ``PATH=/sbin:/usr/sbin:/bin:/usr/bin`` and
``ORIGINATOR=SM``. The simulator adds srkit's documented test hooks, and these
are its ONLY deviations from xapi:

- ``SRKIT_XAPI_SOCKET`` — the UNIX socket of this pool's XenAPI server
  (real: ``/var/lib/xcp/xapi``);
- ``SRKIT_LOCK_DIR``    — per-host lock directory (real: ``/var/lock/sm``);
- ``SRKIT_STATE_DIR``   — per-host state directory (real: ``/run/srkit``);
- ``SRKIT_LOG_FILE``    — ``<pool dir>/SMlog`` (real: syslog facility local2);
- plus whatever the pool was explicitly configured with: an ``extra_env`` dict
  and, only when asked for, ``PYTHONPATH``.

Reply (§1.6, §3): exit status first (non-zero → ``SR_BACKEND_FAILURE
["non-zero exit"; stdout; stderr]``), then stdout parsed as ONE XML document
(failure → ``SR_BACKEND_FAILURE [exn; stdout; stderr]``), faults mapped as in
§3.4, then the value checked against the command's reply shape (§3.1, §3.2).
"""
import subprocess
import time
import uuid as uuidlib
import xmlrpc.client

from framework.wire import xml_text
from simulator.errors import XapiError

XAPI_PATH = "/sbin:/usr/sbin:/bin:/usr/bin"

# §2.1: the order of keys on the wire
KEY_ORDER = ("host_ref", "command", "args", "device_config", "session_ref", "sr_sm_config",
             "sr_ref", "vdi_type", "sr_uuid", "vdi_ref", "vdi_location", "vdi_uuid",
             "driver_params", "vdi_sm_config", "new_uuid", "subtask_of", "vdi_on_boot",
             "vdi_allow_caching", "local_cache_sr")

# §1.7: xapi runs these only where device_config:SRmaster = "true"
MASTER_ONLY = frozenset(("sr_scan", "vdi_create", "vdi_delete", "vdi_snapshot", "vdi_clone",
                         "vdi_resize", "vdi_compose", "vdi_enable_cbt", "vdi_disable_cbt",
                         "vdi_data_destroy", "vdi_list_changed_blocks"))

# the xapi task a command runs in (subtask_of is opaque; this only makes it look real)
TASK_NAMES = {
    "sr_create": "SR.create", "sr_delete": "SR.destroy", "sr_attach": "PBD.plug",
    "sr_detach": "PBD.unplug", "sr_scan": "SR.scan", "sr_update": "SR.update",
    "sr_probe": "SR.probe", "vdi_create": "VDI.create", "vdi_introduce": "VDI.introduce",
    "vdi_delete": "VDI.destroy", "vdi_update": "VDI.update", "vdi_attach": "VDI.attach2",
    "vdi_activate": "VDI.activate3", "vdi_deactivate": "VDI.deactivate",
    "vdi_detach": "VDI.detach", "vdi_snapshot": "VDI.snapshot", "vdi_clone": "VDI.clone",
    "vdi_resize": "VDI.resize", "vdi_generate_config": "VDI.generate_config",
    "vdi_revert": "VDI.revert", "vdi_epoch_begin": "VDI.epoch_begin",
    "vdi_epoch_end": "VDI.epoch_end",
}


# -- encoder (xapi's xMLRPC.ml To.*) -------------------------------------------
def encode_value(v):
    if isinstance(v, bool):
        return "<value><boolean>%d</boolean></value>" % v
    if isinstance(v, int):
        return "<value><int>%d</int></value>" % v
    if isinstance(v, str):
        return "<value>%s</value>" % xml_text(v) if v else "<value/>"
    if isinstance(v, dict):
        if not v:
            return "<value><struct/></value>"
        return "<value><struct>%s</struct></value>" % "".join(
            "<member><name>%s</name>%s</member>" % (xml_text(str(k)), encode_value(x))
            for k, x in v.items())
    if isinstance(v, (list, tuple)):
        if not v:
            return "<value><array><data/></array></value>"
        return "<value><array><data>%s</data></array></value>" % "".join(
            encode_value(x) for x in v)
    raise TypeError("cannot encode %r" % (v,))


def encode_call(method, param):
    """One methodCall document with one parameter, byte for byte as xapi builds it."""
    return ("<methodCall><methodName>%s</methodName><params><param>%s</param></params>"
            "</methodCall>" % (xml_text(method), encode_value(param)))


def build_request(command, **keys):
    """The request struct as an ordered dict: keys in xapi's order, ``None`` values
    dropped, ``args`` forced to strings; unknown extra keys go last."""
    keys["command"] = command
    keys["args"] = [str(a) for a in (keys.get("args") or ())]
    ordered = {k: keys[k] for k in KEY_ORDER if keys.get(k) is not None}
    ordered.update((k, v) for k, v in keys.items() if k not in ordered and v is not None)
    return ordered


def subtask_of(command):
    return "DummyRef:|%s|%s" % (uuidlib.uuid4(), TASK_NAMES.get(command, command))


# -- running -------------------------------------------------------------------
class CallRecord:
    """What one driver invocation did (``Pool.last_call``). A plain class: importing
    dataclasses costs every `srkit xe` command more than the class is worth."""

    def __init__(self, command, executable, document, host="", returncode=None, stdout="",
                 stderr="", seconds=0.0, result=None, error=None, request=None):
        self.command, self.executable, self.document = command, executable, document
        self.host, self.returncode, self.stdout, self.stderr = host, returncode, stdout, stderr
        self.seconds, self.result, self.error = seconds, result, error
        self.request = {} if request is None else request

    def __repr__(self):
        return "CallRecord(%s)" % ", ".join("%s=%r" % kv for kv in vars(self).items())


def driver_env(hooks, extra_env=None, pythonpath=None):
    env = {"PATH": XAPI_PATH, "ORIGINATOR": "SM"}
    env.update(hooks)
    env.update(extra_env or {})
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return env


def run(executable, document, env, command=""):
    """Run ``executable document`` as forkexecd would; return a CallRecord."""
    rec = CallRecord(command=command, executable=executable, document=document)
    start = time.monotonic()
    proc = subprocess.run([executable, document], stdin=subprocess.DEVNULL,
                          capture_output=True, env=env, close_fds=True)
    rec.seconds = time.monotonic() - start
    rec.returncode = proc.returncode
    rec.stdout = proc.stdout.decode("utf-8", "replace")
    rec.stderr = proc.stderr.decode("utf-8", "replace")
    return rec


def parse_reply(rec, sr_ref="", vdi_ref=""):
    """The driver's value, or XapiError as xapi would raise it (§1.6, §3.4)."""
    out, err = rec.stdout, rec.stderr
    if rec.returncode < 0:
        raise XapiError("SR_BACKEND_FAILURE",
                        ["received signal: %d" % -rec.returncode, out, err])
    if rec.returncode != 0:
        raise XapiError("SR_BACKEND_FAILURE", ["non-zero exit", out, err])
    try:
        params, method = xmlrpc.client.loads(out)
        if method is not None or len(params) != 1:
            raise ValueError("not a methodResponse with one param")
    except xmlrpc.client.Fault as fault:
        raise map_fault(fault, err, sr_ref, vdi_ref) from None
    except Exception as e:
        raise XapiError("SR_BACKEND_FAILURE", ["%s: %s" % (type(e).__name__, e), out, err])
    return params[0]


def map_fault(fault, stderr, sr_ref="", vdi_ref=""):
    code = fault.faultCode
    if code == 38:
        return XapiError("SR_OPERATION_NOT_SUPPORTED", [sr_ref])
    if code == 39:
        return XapiError("SR_NOT_EMPTY", [])
    if code == 24:
        return XapiError("VDI_IN_USE", [vdi_ref])
    if code == 16:
        return XapiError("SR_DEVICE_IN_USE", [])
    if code == 144:
        return XapiError("VDI_MISSING", [sr_ref, vdi_ref])
    return XapiError("SR_BACKEND_FAILURE_%s" % code, ["", str(fault.faultString), stderr])


# -- reply shapes (§3.1, §3.2) ------------------------------------------------
def _bad(rec, why):
    raise XapiError("SR_BACKEND_FAILURE", ["XML parse failure: " + why, rec.stdout, rec.stderr])


def _nil(rec, v):
    if v is not None:
        _bad(rec, "expected nil, got %s" % type(v).__name__)
    return v


def _string(rec, v):
    if not isinstance(v, str):
        _bad(rec, "expected a string, got %s" % type(v).__name__)
    return v


def _vdi_info(rec, v):
    if not isinstance(v, dict) or "uuid" not in v or "location" not in v:
        _bad(rec, "vdi-info must be a struct with uuid and location")
    for k, x in v.items():
        if not isinstance(x, str):
            _bad(rec, "vdi-info member %s is not a string" % k)
    return v


def _attach(rec, v):
    if not isinstance(v, dict):
        _bad(rec, "attach result must be a struct")
    if not isinstance(v.get("params_nbd"), str):
        _bad(rec, "attach result lacks string member params_nbd")
    if "params" in v and not isinstance(v["params"], str):
        _bad(rec, "attach member params is not a string")
    if "o_direct" in v and not isinstance(v["o_direct"], bool):
        _bad(rec, "attach member o_direct is not a boolean")
    if "o_direct_reason" in v and not isinstance(v["o_direct_reason"], str):
        _bad(rec, "attach member o_direct_reason is not a string")
    xs = v.get("xenstore_data", {})
    if not isinstance(xs, dict) or not all(isinstance(x, str) for x in xs.values()):
        _bad(rec, "attach member xenstore_data is not a struct of strings")
    return v


def _any(rec, v):
    return v


REPLY_SHAPES = {
    "sr_get_driver_info": _any, "sr_probe": _string, "sr_content_type": _string,
    "vdi_create": _vdi_info, "vdi_introduce": _vdi_info, "vdi_snapshot": _vdi_info,
    "vdi_clone": _vdi_info, "vdi_resize": _vdi_info, "vdi_resize_online": _vdi_info,
    "vdi_attach": _attach, "vdi_attach_from_config": _attach,
    "vdi_generate_config": _string, "vdi_list_changed_blocks": _string,
}


def check_shape(command, rec, value):
    return REPLY_SHAPES.get(command, _nil)(rec, value)


# -- sr_get_driver_info (§1.4) ----------------------------------------------------
KNOWN_FEATURES = frozenset((
    "SR_CREATE SR_DELETE SR_ATTACH SR_DETACH SR_SCAN SR_PROBE SR_UPDATE "
    "SR_SUPPORTS_LOCAL_CACHING SR_METADATA SR_TRIM SR_MULTIPATH SR_CACHING SR_STATS "
    "VDI_CREATE VDI_DELETE VDI_ATTACH VDI_DETACH VDI_MIRROR VDI_MIRROR_IN VDI_RESIZE "
    "VDI_RESIZE_ONLINE VDI_CLONE VDI_SNAPSHOT VDI_ACTIVATE VDI_ACTIVATE_READONLY "
    "VDI_DEACTIVATE VDI_UPDATE VDI_INTRODUCE VDI_GENERATE_CONFIG VDI_ATTACH_OFFLINE "
    "VDI_RESET_ON_BOOT VDI_CONFIG_CBT VDI_COMPOSE VDI_REVERT LARGE_VDI THIN_PROVISIONING "
    "VDI_READ_CACHING").split())


def parse_driver_info(info):
    """Validate a driver-info struct like ``parse_sr_get_driver_info``; return the
    fields of an SM record. Raises ValueError with the reason on rejection."""
    if not isinstance(info, dict):
        raise ValueError("driver info is not a struct")
    out = {}
    for key in ("name", "description", "vendor", "copyright", "driver_version",
                "required_api_version"):
        if not isinstance(info.get(key), str):
            raise ValueError("missing or non-string field %r" % key)
        out[key] = info[key]
    caps = info.get("capabilities")
    if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
        raise ValueError("capabilities is not an array of strings")
    conf = info.get("configuration")
    if not isinstance(conf, list) or not all(
            isinstance(c, dict) and isinstance(c.get("key"), str)
            and isinstance(c.get("description"), str) for c in conf):
        raise ValueError("configuration is not an array of {key, description} structs")
    features = {}
    for cap in caps:
        name, _, version = cap.partition("/")
        if name not in KNOWN_FEATURES:
            continue  # xapi: "SM.feature: unknown feature"
        features[name] = str(int(version)) if version.isdigit() else "1"
    return dict(name_label=out["name"], name_description=out["description"],
                vendor=out["vendor"], copyright=out["copyright"],
                version=out["driver_version"],
                required_api_version=out["required_api_version"],
                capabilities=sorted(features), features=features,
                configuration={c["key"]: c["description"] for c in conf})
