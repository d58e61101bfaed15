"""Tiny fake SMAPIv1 drivers for the simulator tests: python3 scripts that talk XML-RPC
to SRKIT_XAPI_SOCKET with the standard library only."""
import os
import stat
import textwrap

# what both fakes share: xapi calls over SRKIT_XAPI_SOCKET, replies, faults, the request
_XAPI_CALLS = r'''class UDS(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(os.environ["SRKIT_XAPI_SOCKET"])


class Transport(xmlrpc.client.Transport):
    def make_connection(self, host):
        return UDS("localhost")


def xapi(method, *args):
    proxy = xmlrpc.client.ServerProxy("http://localhost/", transport=Transport(), allow_none=True)
    r = getattr(proxy, method)(REQ["session_ref"], *args)
    if r["Status"] != "Success":
        raise RuntimeError(r["ErrorDescription"])
    return r["Value"]


def reply(value):
    sys.stdout.write(xmlrpc.client.dumps((value,), "", True, allow_none=True))
    sys.exit(0)


def fault(code, msg):
    sys.stdout.write(xmlrpc.client.dumps(xmlrpc.client.Fault(code, msg), "", True))
    sys.exit(0)


(REQ,), CMD = xmlrpc.client.loads(sys.argv[1])
'''

FAKE_DRIVER = r'''#!/usr/bin/env python3
import http.client, json, os, socket, sys, uuid, xmlrpc.client

CAPS = %(caps)r


''' + _XAPI_CALLS + r'''with open(os.environ["SRKIT_STATE_DIR"] + "/requests.log", "a") as f:
    f.write(json.dumps({"command": CMD, "argv": len(sys.argv), "env": dict(os.environ),
                        "req": REQ}) + "\n")
if CMD == "sr_get_driver_info":
    reply({"name": "fake", "description": "a fake", "vendor": "srkit", "copyright": "none",
           "driver_version": "1.0", "required_api_version": "1.0", "capabilities": CAPS,
           "configuration": [{"key": "location", "description": "a dir"}]})
DB = os.path.join(os.environ["SRKIT_STATE_DIR"], "vdis-%%s.json" %% REQ.get("sr_uuid"))
vdis = json.load(open(DB)) if os.path.exists(DB) else {}


def save():
    # atomic, so concurrent fake-driver processes never read a half-written file
    with open(DB + ".%%d" %% os.getpid(), "w") as f:
        json.dump(vdis, f)
    os.rename(DB + ".%%d" %% os.getpid(), DB)


def introduce(u, size, label="", snap=False):
    vdis[u] = size
    save()
    xapi("VDI.db_introduce", u, label, "", REQ["sr_ref"], "user", False, False, {}, u, {},
         {}, True, str(size), "0", "", snap, "19700101T00:00:00Z", "", False)
    return {"uuid": u, "location": u}


if REQ["device_config"].get("fail") == CMD:
    fault(46, "The VDI is not available [opterr=asked to fail]")
if CMD in ("sr_create", "sr_attach", "sr_detach", "sr_delete", "vdi_update",
           "vdi_activate", "vdi_deactivate", "vdi_detach", "sr_update"):
    if CMD == "sr_delete" and vdis:
        fault(39, "The SR is not empty")
    reply(None)
if CMD == "sr_probe":
    reply("<SRlist><SR><UUID>x</UUID></SR></SRlist>")
if CMD == "sr_scan":
    known = {r["location"]: ref for ref, r in xapi(
        "VDI.get_all_records_where", 'field "SR" = "%%s"' %% REQ["sr_ref"]).items()}
    for loc, size in vdis.items():
        if loc not in known:
            introduce(loc, size)
    for loc, ref in known.items():
        if loc not in vdis:
            xapi("VDI.db_forget", ref)
    reply(None)
if CMD == "vdi_create":
    reply(introduce(REQ.get("vdi_uuid") or str(uuid.uuid4()), int(REQ["args"][0]),
                    REQ["args"][1]))
if CMD in ("vdi_snapshot", "vdi_clone"):
    reply(introduce(str(uuid.uuid4()), vdis[REQ["vdi_location"]], snap=CMD == "vdi_snapshot"))
if CMD == "vdi_delete":
    vdis.pop(REQ["vdi_location"], None)
    save()
    xapi("VDI.db_forget", REQ["vdi_ref"])
    reply(None)
if CMD == "vdi_resize":
    vdis[REQ["vdi_location"]] = int(REQ["args"][0])
    save()
    xapi("VDI.set_virtual_size", REQ["vdi_ref"], REQ["args"][0])
    reply({"uuid": REQ["vdi_uuid"], "location": REQ["vdi_location"]})
if CMD == "vdi_attach":
    reply({"params": "/dev/fake/" + REQ["vdi_location"], "params_nbd": "",
           "o_direct": True, "xenstore_data": {}})
if CMD == "vdi_generate_config":
    reply("<methodCall/>")
fault(38, "The requested method is not supported/implemented")
'''


ALL_CAPS = ["SR_PROBE", "SR_SCAN", "SR_UPDATE", "SR_DELETE", "VDI_CREATE", "VDI_DELETE",
            "VDI_ATTACH", "VDI_DETACH", "VDI_SNAPSHOT", "VDI_CLONE", "VDI_RESIZE",
            "VDI_UPDATE", "VDI_GENERATE_CONFIG", "VDI_ACTIVATE", "VDI_DEACTIVATE",
            "ATOMIC_PAUSE", "VDI_RESET_ON_BOOT/2"]


def write_driver(sm_dir, name, source, executable=True):
    path = os.path.join(str(sm_dir), name + "SR")
    with open(path, "w") as f:
        f.write(source)
    if executable:
        os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def script(body):
    """A raw fake driver: a python3 script with the given body."""
    return "#!/usr/bin/env python3\nimport sys, xmlrpc.client\n" + textwrap.dedent(body)


# A file-backed fake with changed block tracking: each VDI is a sparse file under
# device_config:location, attach gives that file, and the bitmap is an exact content
# diff (64 KiB blocks); data_destroy keeps the per-block digests and drops the data.
FAKE_CBT_DRIVER = r'''#!/usr/bin/env python3
import base64, hashlib, http.client, json, os, shutil, socket, sys, uuid, xmlrpc.client

BLOCK = 64 * 1024


''' + _XAPI_CALLS + r'''if CMD == "sr_get_driver_info":
    reply({"name": "fakecbt", "description": "a fake with CBT", "vendor": "srkit",
           "copyright": "none", "driver_version": "1.0", "required_api_version": "1.0",
           "capabilities": ["SR_SCAN", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH", "VDI_DETACH",
                            "VDI_SNAPSHOT", "VDI_CLONE", "VDI_RESIZE", "VDI_CONFIG_CBT",
                            "VDI_ACTIVATE", "VDI_DEACTIVATE"],
           "configuration": [{"key": "location", "description": "a dir"}]})
DIR = REQ["device_config"]["location"]
os.makedirs(DIR, exist_ok=True)
META = os.path.join(DIR, "meta.json")
meta = json.load(open(META)) if os.path.exists(META) else {}


def save():
    with open(META + ".tmp", "w") as f:
        json.dump(meta, f)
    os.rename(META + ".tmp", META)


def img(u):
    return os.path.join(DIR, u + ".img")


def digests(u):
    if meta[u].get("digests") is not None:
        return meta[u]["digests"]
    out = []
    with open(img(u), "rb") as f:
        for _ in range(0, meta[u]["size"], BLOCK):
            out.append(hashlib.sha256(f.read(BLOCK)).hexdigest())
    return out


def introduce(u, size, snap=False, cbt=False, source=None):
    if source:
        shutil.copyfile(img(source), img(u))
    else:
        with open(img(u), "wb") as f:
            f.truncate(size)
    meta[u] = {"size": size, "cbt": cbt}
    save()
    xapi("VDI.db_introduce", u, "", "", REQ["sr_ref"], "user", False, False, {}, u, {},
         {}, True, str(size), "0", "", snap, "19700101T00:00:00Z", "", cbt)
    return {"uuid": u, "location": u}


LOC = REQ.get("vdi_location")
if CMD in ("sr_create", "sr_attach", "sr_detach", "sr_delete", "vdi_activate",
           "vdi_deactivate", "vdi_detach", "sr_scan"):
    reply(None)
if CMD == "vdi_create":
    reply(introduce(REQ.get("vdi_uuid") or str(uuid.uuid4()), int(REQ["args"][0])))
if CMD in ("vdi_snapshot", "vdi_clone"):
    reply(introduce(str(uuid.uuid4()), meta[LOC]["size"], CMD == "vdi_snapshot",
                    meta[LOC]["cbt"], source=LOC))
if CMD == "vdi_delete":
    meta.pop(LOC, None)
    save()
    if os.path.exists(img(LOC)):
        os.unlink(img(LOC))
    xapi("VDI.db_forget", REQ["vdi_ref"])
    reply(None)
if CMD == "vdi_resize":
    meta[LOC]["size"] = int(REQ["args"][0])
    with open(img(LOC), "r+b") as f:
        f.truncate(meta[LOC]["size"])
    save()
    xapi("VDI.set_virtual_size", REQ["vdi_ref"], REQ["args"][0])
    reply({"uuid": REQ["vdi_uuid"], "location": LOC})
if CMD == "vdi_attach":
    reply({"params": img(LOC), "params_nbd": "", "o_direct": False, "xenstore_data": {}})
if CMD in ("vdi_enable_cbt", "vdi_disable_cbt"):
    meta[LOC]["cbt"] = CMD == "vdi_enable_cbt"
    save()
    xapi("VDI.set_cbt_enabled", REQ["vdi_ref"], meta[LOC]["cbt"])
    reply(None)
if CMD == "vdi_data_destroy":
    meta[LOC]["digests"] = digests(LOC)
    save()
    if os.path.exists(img(LOC)):  # a second data_destroy is a no-op
        os.unlink(img(LOC))
    reply(None)
if CMD == "vdi_list_changed_blocks":
    to = xapi("VDI.get_location", REQ["args"][0])
    if not (meta[LOC]["cbt"] and meta[to]["cbt"]):
        fault(460, "Failed to calculate changed blocks for given VDIs. [opterr=CBT disabled]")
    old, new = digests(LOC), digests(to)
    bits = [i >= len(old) or old[i] != d for i, d in enumerate(new)]
    bits += [False] * (-len(bits) % 8)
    reply(base64.b64encode(bytes(int("".join("1" if b else "0" for b in bits[i:i + 8]), 2)
                                 for i in range(0, len(bits), 8))).decode())
fault(38, "The requested method is not supported/implemented")
'''
