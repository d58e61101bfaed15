"""Driver-independent helpers of the conformance suite: reply parsing, raw
requests built like xapi's, data I/O through an attached VDI."""
import os
import re
import xmlrpc.client

from simulator import sm_exec
from simulator.testkit import read_at, write_at  # noqa: F401 (the checks use h.read_at)

# smapiv1.md §1.4: the capability names xapi 26.1.4 knows
KNOWN_FEATURES = sm_exec.KNOWN_FEATURES
CAPABILITY_SYNTAX = re.compile(r"^[A-Z][A-Z0-9_]*(/[0-9]+)?$")

# §2.3: commands whose reply must be <nil/>
UNIT_COMMANDS = frozenset((
    "sr_create", "sr_delete", "sr_attach", "sr_detach", "sr_scan", "sr_update",
    "vdi_delete", "vdi_update", "vdi_activate", "vdi_deactivate", "vdi_detach",
    "vdi_epoch_begin", "vdi_epoch_end", "vdi_detach_from_config", "vdi_revert",
    "vdi_compose", "vdi_enable_cbt", "vdi_disable_cbt", "vdi_data_destroy"))
VDI_INFO_COMMANDS = frozenset(("vdi_create", "vdi_introduce", "vdi_snapshot", "vdi_clone",
                               "vdi_resize"))
ATTACH_COMMANDS = frozenset(("vdi_attach", "vdi_attach_from_config"))

MiB = 1024 * 1024


class Reply:
    """One decoded driver reply: ``value`` or ``fault`` (code, string)."""

    def __init__(self, value=None, fault=None):
        self.value = value
        self.fault = fault

    @property
    def code(self):
        return self.fault[0] if self.fault else None

    def __repr__(self):
        return "Reply(fault=%r)" % (self.fault,) if self.fault else "Reply(%r)" % (self.value,)


def parse_reply(stdout):
    """Parse stdout as exactly one XML-RPC methodResponse (AssertionError otherwise)."""
    try:
        params, method = xmlrpc.client.loads(stdout, use_builtin_types=True)
    except xmlrpc.client.Fault as f:
        assert isinstance(f.faultCode, int), "faultCode is not an int: %r" % (f.faultCode,)
        assert isinstance(f.faultString, str), "faultString is not a string"
        return Reply(fault=(f.faultCode, f.faultString))
    except Exception as e:
        raise AssertionError("stdout is not one well-formed XML-RPC methodResponse "
                             "(%s: %s): %r" % (type(e).__name__, e, stdout[:2000]))
    assert method is None, "stdout is a methodCall (%r), not a methodResponse" % method
    assert len(params) == 1, "methodResponse carries %d params, expected 1" % len(params)
    return Reply(value=params[0])


def check_discipline(command, returncode, stdout, stderr, fault_ok=True):
    """§1.6/§3.1: exit 0, one methodResponse on stdout, clean stderr on success,
    and the reply shape the command requires. Returns the Reply."""
    assert returncode == 0, "%s: exit status %r (xapi turns it into SR_BACKEND_FAILURE); " \
        "stderr=%r" % (command, returncode, stderr[-1000:])
    reply = parse_reply(stdout)
    if reply.fault:
        assert fault_ok, "%s: unexpected fault %r" % (command, reply.fault)
        return reply
    assert stderr == "", "%s succeeded but wrote to stderr: %r" % (command, stderr[-1000:])
    check_shape(command, reply.value)
    return reply


def check_shape(command, value):
    if command in UNIT_COMMANDS:
        assert value is None, "%s must return nil, got %r" % (command, value)
    elif command in VDI_INFO_COMMANDS:
        check_vdi_info(command, value)
    elif command in ATTACH_COMMANDS:
        check_attach(command, value)
    elif command in ("sr_probe", "vdi_generate_config"):
        assert isinstance(value, str), "%s must return a string, got %r" % (command, value)


def check_vdi_info(command, value):
    assert isinstance(value, dict), "%s must return a vdi-info struct: %r" % (command, value)
    for key in ("uuid", "location"):
        assert key in value, "%s vdi-info lacks %r: %r" % (command, key, value)
        assert value[key], "%s vdi-info %r is empty" % (command, key)
    for key, member in value.items():
        assert isinstance(member, str), "%s vdi-info member %r is %s, must be a string " \
            "(xapi: XML parse failure)" % (command, key, type(member).__name__)


def check_attach(command, value):
    assert isinstance(value, dict), "%s must return a struct: %r" % (command, value)
    assert isinstance(value.get("params"), str), \
        "%s lacks string member params (required by xapi 1.249/8.2)" % command
    assert isinstance(value.get("params_nbd"), str), \
        "%s lacks string member params_nbd (required by xapi 26.1.4/8.3)" % command
    if "o_direct" in value:
        assert isinstance(value["o_direct"], bool), "o_direct must be a boolean"
    if "o_direct_reason" in value:
        assert isinstance(value["o_direct_reason"], str), "o_direct_reason must be a string"
    xs = value.get("xenstore_data", {})
    assert isinstance(xs, dict) and all(isinstance(v, str) for v in xs.values()), \
        "xenstore_data must be a struct of strings: %r" % (xs,)


def parse_capabilities(caps):
    """{NAME: version} from capability strings, with xapi's rules (§1.4)."""
    out = {}
    for cap in caps:
        name, _, version = cap.partition("/")
        out[name] = int(version) if version.isdigit() else 1
    return out


def request_document(command, **keys):
    """A methodCall built byte for byte as xapi's ``xmlrpc_of_call`` builds it."""
    return sm_exec.encode_call(command, sm_exec.build_request(command, **keys))


# --- data through an attached VDI ----------------------------------------------------

def pattern(seed, length=MiB):
    """Deterministic, non-zero, seed-specific bytes."""
    block = bytes((seed * 131 + i * 7 + 1) % 251 + 1 for i in range(4096))
    return (block * (length // 4096 + 1))[:length]


def device_path(attach_struct):
    path = attach_struct.get("params") or ""
    if not path or not os.path.exists(path):
        return None
    return path


def device_size(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)
