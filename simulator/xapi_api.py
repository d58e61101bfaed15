"""The XenAPI methods the simulator serves to drivers: semantics only, no transport.

``XapiApi(db).call(method, params)`` returns the value or raises ``XapiError``,
as xapi would. Generic accessors (``get_record``, ``get_<field>``, ``set_<field>``,
``add_to_<map>``/``remove_from_<map>``, ``get_by_uuid``, ``get_all*``) are derived
from the records; the few methods with real logic (``VDI.db_introduce``,
``VDI.db_forget``, ``secret.create``, ``message.create``, ``session.*``) are
written out. Reference: smapiv1.md §4.
"""
import re
import time
import xmlrpc.client

from simulator import db as dbm
from simulator.errors import XapiError

# classes a client may see (datapath is simulator bookkeeping)
API_CLASSES = ("pool", "host", "SM", "SR", "PBD", "VDI", "secret", "session", "message")

# fields with a XenAPI setter
SETTABLE = {
    "VDI": {"name_label", "name_description", "other_config", "xenstore_data", "sm_config",
            "sharable", "managed", "read_only", "missing", "virtual_size",
            "physical_utilisation", "is_a_snapshot", "snapshot_of", "snapshot_time",
            "metadata_of_pool", "cbt_enabled", "on_boot", "allow_caching", "tags"},
    "SR": {"name_label", "name_description", "other_config", "sm_config", "physical_size",
           "physical_utilisation", "virtual_allocation", "shared", "tags"},
    "PBD": {"device_config", "other_config"},
    "host": {"name_label", "name_description", "other_config"},
    "pool": {"name_label", "name_description", "other_config", "default_SR"},
    "secret": {"value", "other_config"},
    "SM": {"other_config"},
}
MAP_FIELDS = {"other_config", "sm_config", "xenstore_data", "device_config"}
INT_FIELDS = {"virtual_size", "physical_utilisation", "physical_size", "virtual_allocation"}
BOOL_FIELDS = {"sharable", "managed", "read_only", "missing", "is_a_snapshot",
               "cbt_enabled", "allow_caching", "shared"}
DATE_FIELDS = {"snapshot_time", "last_active", "timestamp"}
# ref-typed fields -> the class their ref must name (None: any well-formed ref, since
# metadata_of_pool names a pool that is usually not this one)
REF_FIELDS = {"snapshot_of": "VDI", "metadata_of_pool": None, "default_SR": "SR"}

# §4.2: only the SM session of the target SR may call these
SM_SESSION_ONLY = {
    "SR.set_virtual_allocation", "SR.set_physical_size", "SR.set_physical_utilisation",
    "VDI.db_introduce", "VDI.db_forget", "VDI.set_sharable", "VDI.set_managed",
    "VDI.set_read_only", "VDI.set_missing", "VDI.set_virtual_size",
    "VDI.set_physical_utilisation", "VDI.set_is_a_snapshot", "VDI.set_snapshot_of",
    "VDI.set_snapshot_time", "VDI.set_metadata_of_pool", "VDI.set_cbt_enabled",
    "PBD.set_device_config",
}

_UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def now_iso():
    return time.strftime("%Y%m%dT%H:%M:%SZ", time.gmtime())


def to_wire(cls, rec):
    """A stored record as xapi marshals it (date-times as XML-RPC DateTime)."""
    out = dict(rec)
    for f in DATE_FIELDS & set(out):
        out[f] = xmlrpc.client.DateTime(out[f])
    return out


class XapiApi:
    """``client`` (a :class:`simulator.xapi_client.ClientCalls`, optional) serves the
    calls that run storage flows; without it only records and drivers' callbacks."""

    def __init__(self, db, log=None, client=None):
        self.db = db
        self.log = log or (lambda msg: None)
        self.client = client

    # -- entry point --------------------------------------------------------
    def call(self, method, params):
        params = list(params)
        if method in ("session.login_with_password", "session.slave_local_login_with_password"):
            return self._login(method, params)
        cls, _, name = method.partition(".")
        if cls not in API_CLASSES or not name:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", [method])
        if not params:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", [method, "1", "0"])
        session, args = params[0], params[1:]
        session_rec = self._session(session)
        if self.client is not None and self.client.handles(method):
            self.log("%s %s" % (method, " ".join(str(a) for a in args)))
            return self.client.call(method, session, args)
        special = getattr(self, "_%s_%s" % (cls, name), None)
        if special is not None:
            return special(session, session_rec, method, args)
        return self._generic(session_rec, method, cls, name, args)

    # -- sessions -----------------------------------------------------------
    def _login(self, method, params):
        if len(params) not in (2, 3, 4):
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", [method, "4", str(len(params))])
        master = self._master()
        return self.db.create("session", this_host=master, auth_user_name=str(params[0]),
                              originator=str(params[3]) if len(params) > 3 else "",
                              last_active=now_iso())

    def _master(self):
        pools = self.db.refs("pool")
        return self.db.get("pool", pools[0])["master"] if pools else dbm.NULL_REF

    def _session(self, ref):
        if not isinstance(ref, str) or not self.db.exists("session", ref):
            raise XapiError("SESSION_INVALID", [str(ref)])
        return self.db.get("session", ref)

    def _session_logout(self, session, srec, method, args):
        self._arity(method, args, 0)
        self.db.delete("session", session)
        return ""

    _session_local_logout = _session_logout

    def _session_get_this_host(self, session, srec, method, args):
        return srec["this_host"]

    # -- helpers ------------------------------------------------------------
    @staticmethod
    def _arity(method, args, *counts):
        if len(args) not in counts:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH",
                            [method, str(max(counts) + 1), str(len(args) + 1)])

    def _check_sm_access(self, method, srec, sr_ref):
        if method in SM_SESSION_ONLY and srec["other_config"].get("_sm_session") != sr_ref:
            raise XapiError("PERMISSION_DENIED",
                            ["%s may only be called from the SM session of SR %s"
                             % (method, sr_ref)])

    def _target_sr(self, cls, ref):
        if cls == "SR":
            return ref
        if cls in ("VDI", "PBD"):
            return self.db.get(cls, ref)["SR"]
        return None

    def _coerce(self, field, value):
        if field in INT_FIELDS:
            if isinstance(value, bool) or not isinstance(value, (int, str)) \
                    or not re.fullmatch(r"-?[0-9]+", str(value)):
                raise XapiError("FIELD_TYPE_ERROR", [field])
            return str(int(value))
        if field in BOOL_FIELDS:
            if not isinstance(value, bool):
                raise XapiError("FIELD_TYPE_ERROR", [field])
            return value
        if field in DATE_FIELDS:
            return value.value if isinstance(value, xmlrpc.client.DateTime) else str(value)
        if field in REF_FIELDS:
            return self._ref(REF_FIELDS[field], value)
        if field in MAP_FIELDS:
            if not isinstance(value, dict):
                raise XapiError("FIELD_TYPE_ERROR", [field])
            return {str(k): str(v) for k, v in value.items()}
        if field == "type" and value not in dbm.VDI_TYPES:
            raise XapiError("FIELD_TYPE_ERROR", [field])
        return value

    def _ref(self, cls, value):
        """A ref-typed value as xapi takes it: NULL, or a handle to a live object of
        ``cls`` (HANDLE_INVALID otherwise), so no dangling or malformed ref is stored."""
        if value in ("", dbm.NULL_REF):
            return dbm.NULL_REF
        if not isinstance(value, str) or not value.startswith("OpaqueRef:"):
            raise XapiError("HANDLE_INVALID", [cls or "ref", str(value)])
        if cls is not None and not self.db.exists(cls, value):
            raise XapiError("HANDLE_INVALID", [cls, value])
        return value

    # -- generic accessors ----------------------------------------------------
    def _generic(self, srec, method, cls, name, args):
        if name in ("get_all", "get_all_records"):
            self._arity(method, args, 0)
            if cls == "session":
                raise XapiError("MESSAGE_METHOD_UNKNOWN", [method])
            if name == "get_all":
                return self.db.refs(cls)
            return {r: to_wire(cls, rec) for r, rec in self.db.all(cls)}
        if name == "get_all_records_where":
            self._arity(method, args, 1)
            pred = parse_where(args[0])
            return {r: to_wire(cls, rec) for r, rec in self.db.all(cls) if pred(rec)}
        if name == "get_by_uuid":
            self._arity(method, args, 1)
            return self.db.by_uuid(cls, args[0])
        if name == "get_by_name_label":
            self._arity(method, args, 1)
            return [r for r, rec in self.db.all(cls) if rec.get("name_label") == args[0]]
        if not args:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH", [method, "2", "1"])
        ref = args[0]
        if name == "get_record":
            self._arity(method, args, 1)
            return to_wire(cls, self.db.get(cls, ref))
        if name.startswith("get_"):
            self._arity(method, args, 1)
            rec = self.db.get(cls, ref)
            field = name[4:]
            if field not in rec:
                raise XapiError("MESSAGE_METHOD_UNKNOWN", [method])
            return to_wire(cls, {field: rec[field]})[field]
        for prefix in ("set_", "add_to_", "remove_from_"):
            if name.startswith(prefix):
                field = name[len(prefix):]
                break
        else:
            raise XapiError("MESSAGE_METHOD_UNKNOWN", [method])
        if field not in SETTABLE.get(cls, ()) or (prefix != "set_" and field not in MAP_FIELDS):
            raise XapiError("MESSAGE_METHOD_UNKNOWN", [method])
        self.db.get(cls, ref)  # HANDLE_INVALID before PERMISSION_DENIED
        self._check_sm_access(method, srec, self._target_sr(cls, ref))
        if prefix == "set_":
            self._arity(method, args, 2)
            value = self._coerce(field, args[1])
            self.db.mutate(cls, ref, lambda rec: rec.__setitem__(field, value))
        elif prefix == "add_to_":
            self._arity(method, args, 3)
            key, value = str(args[1]), str(args[2])

            def add(rec):
                if key in rec[field]:
                    raise XapiError("MAP_DUPLICATE_KEY", [cls, field, ref, key])
                rec[field][key] = value
            self.db.mutate(cls, ref, add)
        else:
            self._arity(method, args, 2)
            self.db.mutate(cls, ref, lambda rec: rec[field].pop(str(args[1]), None))
        return ""

    # -- methods with logic ---------------------------------------------------
    _INTRODUCE_FIELDS = ("uuid", "name_label", "name_description", "SR", "type", "sharable",
                         "read_only", "other_config", "location", "xenstore_data",
                         "sm_config", "managed", "virtual_size", "physical_utilisation",
                         "metadata_of_pool", "is_a_snapshot", "snapshot_time",
                         "snapshot_of", "cbt_enabled")

    def _VDI_db_introduce(self, session, srec, method, args):
        self._arity(method, args, 19, 18)  # cbt_enabled is optional (older callers)
        rec = dict(zip(self._INTRODUCE_FIELDS, args))
        sr = rec["SR"]
        if not self.db.exists("SR", sr):
            raise XapiError("HANDLE_INVALID", ["SR", sr])
        self._check_sm_access(method, srec, sr)
        if not isinstance(rec["uuid"], str) or not _UUID_RE.match(rec["uuid"]):
            raise XapiError("UUID_INVALID", ["VDI", str(rec["uuid"])])
        for field in ("name_label", "name_description", "location"):
            if not isinstance(rec[field], str):
                raise XapiError("FIELD_TYPE_ERROR", [field])
        rec = {k: self._coerce(k, v) for k, v in rec.items()}
        with self.db.transaction():
            for r, other in self.db.stored("VDI"):
                if other["uuid"] == rec["uuid"]:
                    raise XapiError("UUID_INVALID", ["VDI", rec["uuid"]])
                if other["SR"] == sr and other["location"] == rec["location"]:
                    raise XapiError("LOCATION_NOT_UNIQUE", [sr, rec["location"]])
            ref = self.db.create("VDI", **rec)
        self.log("VDI.db_introduce %s uuid=%s location=%s" % (ref, rec["uuid"], rec["location"]))
        return ref

    def _VDI_db_forget(self, session, srec, method, args):
        self._arity(method, args, 1)
        vdi = self.db.get("VDI", args[0])
        self._check_sm_access(method, srec, vdi["SR"])
        self.db.delete("VDI", args[0])
        return ""

    def _secret_create(self, session, srec, method, args):
        self._arity(method, args, 1)
        fields = args[0] if isinstance(args[0], dict) else {}
        if "value" not in fields:
            raise XapiError("FIELD_TYPE_ERROR", ["value"])
        return self.db.create("secret", value=str(fields["value"]),
                              other_config=dict(fields.get("other_config", {})))

    def _message_create(self, session, srec, method, args):
        self._arity(method, args, 5)
        name, priority, cls, obj_uuid, body = args
        return self.db.create("message", name=str(name), priority=str(priority), cls=str(cls),
                              obj_uuid=str(obj_uuid), body=str(body), timestamp=now_iso())

    def _pool_get_master(self, session, srec, method, args):
        self._arity(method, args, 1)
        return self.db.get("pool", args[0])["master"]


# -- the xapi "where" expression language (enough of it) -----------------------
_TOKEN = re.compile(r'\s*(?:(\()|(\))|(=|<>)|"((?:[^"\\]|\\.)*)"|([A-Za-z_]+))')


def parse_where(expr):
    """Compile an expression like ``field "SR" = "OpaqueRef:…" and not field
    "managed" = "false"`` into a predicate on a stored record."""
    tokens, pos = [], 0
    expr = str(expr)
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise XapiError("INVALID_VALUE", ["expr", expr])
        pos = m.end()
        lp, rp, op, string, word = m.groups()
        tokens.append(("str", string.replace('\\"', '"')) if string is not None
                      else ("op", lp or rp or op or word.lower()))

    def peek():
        return tokens[0] if tokens else (None, None)

    def take(kind=None, value=None):
        if not tokens or (kind and tokens[0][0] != kind) or (value and tokens[0][1] != value):
            raise XapiError("INVALID_VALUE", ["expr", expr])
        return tokens.pop(0)[1]

    def atom():
        tok = peek()
        if tok == ("op", "("):
            take()
            p = disj()
            take("op", ")")
            return p
        if tok == ("op", "not"):
            take()
            p = atom()
            return lambda r: not p(r)
        if tok in (("op", "true"), ("op", "false")):
            val = take() == "true"
            return lambda r: val
        if tok == ("op", "field"):
            take()
            name = take("str")
            op = take("op")
            value = take("str")
            if op not in ("=", "<>"):
                raise XapiError("INVALID_VALUE", ["expr", expr])
            eq = op == "="
            return lambda r: (_as_string(r.get(name)) == value) == eq
        raise XapiError("INVALID_VALUE", ["expr", expr])

    def conj():
        p = atom()
        while peek() == ("op", "and"):
            take()
            q, p0 = atom(), p
            p = (lambda a, b: lambda r: a(r) and b(r))(p0, q)
        return p

    def disj():
        p = conj()
        while peek() == ("op", "or"):
            take()
            q, p0 = conj(), p
            p = (lambda a, b: lambda r: a(r) or b(r))(p0, q)
        return p

    pred = disj()
    if tokens:
        raise XapiError("INVALID_VALUE", ["expr", expr])
    return pred


def _as_string(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
