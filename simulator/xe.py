"""``srkit xe``: a subset of xe's storage commands, with xe's syntax and output,
against the simulated pool. ``vdi-attach`` / ``vdi-detach`` are srkit extensions
(a dom0 plug/unplug), not xe commands."""
import re
import sys

from simulator.errors import XapiError

SIZE_SUFFIXES = {"": 1, "B": 1, "KIB": 1 << 10, "MIB": 1 << 20, "GIB": 1 << 30,
                 "TIB": 1 << 40, "PIB": 1 << 50}


class UsageError(Exception):
    pass


def parse_size(text):
    m = re.fullmatch(r"\s*([0-9]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in SIZE_SUFFIXES:
        raise UsageError("Failed to parse parameter: expected a size like 10GiB, got %r" % text)
    return int(m.group(1)) * SIZE_SUFFIXES[m.group(2).upper()]


def parse_bool(text):
    if text.lower() not in ("true", "false", "yes", "no", "1", "0"):
        raise UsageError("Failed to parse parameter: expected a boolean, got %r" % text)
    return text.lower() in ("true", "yes", "1")


class Args:
    """xe arguments: ``k=v``, ``map:k=v`` and ``--minimal``."""

    def __init__(self, argv):
        self.plain, self.maps, self.minimal, self.used = {}, {}, False, set()
        for arg in argv:
            if arg == "--minimal":
                self.minimal = True
                continue
            key, eq, value = arg.partition("=")
            if not eq:
                raise UsageError("Failed to parse argument %r (expected key=value)" % arg)
            if ":" in key:
                name, _, sub = key.partition(":")
                self.maps.setdefault(name, {})[sub] = value
            else:
                self.plain[key] = value

    def get(self, key, default=None):
        self.used.add(key)
        return self.plain.get(key, default)

    def need(self, key):
        if key not in self.plain:
            raise UsageError("Required parameter not found: %s" % key)
        return self.get(key)

    def map(self, name):
        self.used.add(name)
        return dict(self.maps.get(name, {}))


# -- record display -------------------------------------------------------------
def _uuid(pool, cls, ref):
    try:
        return pool.record(cls, ref)["uuid"]
    except XapiError:
        return "<not in database>"


def _fields(pool, cls):
    """[(xe name, mode, getter)] for each class, in xe's order; the first block
    of names (up to None) is what *-list shows by default."""
    u = lambda c, f: lambda r: _uuid(pool, c, r[f])  # noqa: E731
    us = lambda c, f: lambda r: [_uuid(pool, c, x) for x in r[f]]  # noqa: E731
    g = lambda f: lambda r: r[f]  # noqa: E731

    def sr_host(r):
        if r["shared"]:
            return "<shared>"
        hosts = [pool.record("PBD", p)["host"] for p in r["PBDs"]]
        return pool.record("host", hosts[0])["name_label"] if hosts else "<not in database>"

    table = {
        "SR": [("uuid", "RO", g("uuid")), ("name-label", "RW", g("name_label")),
               ("name-description", "RW", g("name_description")), ("host", "RO", sr_host),
               ("type", "RO", g("type")), ("content-type", "RO", g("content_type")), None,
               ("allowed-operations", "SRO", g("allowed_operations")),
               ("VDIs", "SRO", us("VDI", "VDIs")), ("PBDs", "SRO", us("PBD", "PBDs")),
               ("virtual-allocation", "RO", g("virtual_allocation")),
               ("physical-utilisation", "RO", g("physical_utilisation")),
               ("physical-size", "RO", g("physical_size")), ("shared", "RW", g("shared")),
               ("other-config", "MRW", g("other_config")), ("sm-config", "MRO", g("sm_config")),
               ("tags", "SRW", g("tags"))],
        "VDI": [("uuid", "RO", g("uuid")), ("name-label", "RW", g("name_label")),
                ("name-description", "RW", g("name_description")),
                ("sr-uuid", "RO", u("SR", "SR")), ("virtual-size", "RO", g("virtual_size")),
                ("sharable", "RO", g("sharable")), ("read-only", "RO", g("read_only")), None,
                ("is-a-snapshot", "RO", g("is_a_snapshot")),
                ("snapshot-of", "RO", lambda r: "<not in database>" if r["snapshot_of"]
                 == "OpaqueRef:NULL" else _uuid(pool, "VDI", r["snapshot_of"])),
                ("snapshots", "RO", us("VDI", "snapshots")),
                ("snapshot-time", "RO", g("snapshot_time")),
                ("physical-utilisation", "RO", g("physical_utilisation")),
                ("location", "RO", g("location")), ("type", "RO", g("type")),
                ("managed", "RO", g("managed")), ("missing", "RO", g("missing")),
                ("other-config", "MRW", g("other_config")),
                ("xenstore-data", "MRO", g("xenstore_data")),
                ("sm-config", "MRO", g("sm_config")), ("on-boot", "RW", g("on_boot")),
                ("allow-caching", "RW", g("allow_caching")),
                ("cbt-enabled", "RO", g("cbt_enabled"))],
        "PBD": [("uuid", "RO", g("uuid")), ("host-uuid", "RO", u("host", "host")),
                ("sr-uuid", "RO", u("SR", "SR")),
                ("device-config", "MRO", g("device_config")),
                ("currently-attached", "RO", g("currently_attached")), None,
                ("other-config", "MRW", g("other_config"))],
        "host": [("uuid", "RO", g("uuid")), ("name-label", "RW", g("name_label")),
                 ("name-description", "RW", g("name_description")), None,
                 ("address", "RO", g("address")), ("other-config", "MRW", g("other_config"))],
        "SM": [("uuid", "RO", g("uuid")), ("name-label", "RO", g("name_label")),
               ("type", "RO", g("type")), ("vendor", "RO", g("vendor")),
               ("copyright", "RO", g("copyright")),
               ("required-api-version", "RO", g("required_api_version")), None,
               ("name-description", "RO", g("name_description")),
               ("version", "RO", g("version")), ("configuration", "MRO", g("configuration")),
               ("capabilities", "SRO", g("capabilities")),
               ("features", "MRO", g("features")),
               ("driver-filename", "RO", g("driver_filename"))],
    }
    return table[cls]


def _show(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "; ".join("%s: %s" % kv for kv in value.items())
    if isinstance(value, (list, tuple)):
        return "; ".join(str(v) for v in value)
    return str(value)


def format_records(rows):
    """xe's record blocks: rows = [[(name, mode, text)]]."""
    out = []
    for row in rows:
        labels = ["%s (%3s)" % (name, mode) for name, mode, _ in row]
        width = max(len(lab) for lab in labels)
        lines = [labels[0].ljust(width) + ": " + row[0][2]]
        lines += [lab.rjust(width) + ": " + text for lab, (_, _, text) in zip(labels[1:], row[1:])]
        out.append("\n".join(line.rstrip() if not line.endswith(": ") else line
                             for line in lines) + "\n\n")
    return "\n".join(out) if out else ""


def param_list(pool, cls, args):
    pool.by_uuid(cls, args.need("uuid"))  # UUID_INVALID like xe
    return list_records(pool, cls, args, everything=True)


def list_records(pool, cls, args, everything=False):
    fields = _fields(pool, cls)
    default = fields[:fields.index(None)]
    fields = [f for f in fields if f]
    wanted = args.get("params")
    if wanted == "all" or everything:
        shown = fields
    elif wanted:
        names = wanted.split(",")
        shown = [f for f in fields if f[0] in names]
    else:
        shown = default
    filters = {k: v for k, v in args.plain.items() if k not in ("params",)}
    byname = {f[0]: f for f in fields}
    for k in filters:
        if k not in byname:
            raise UsageError("Unknown field '%s'" % k)
        args.used.add(k)
    rows, uuids = [], []
    for ref, rec in pool.db.all(cls):
        if any(_show(byname[k][2](rec)) != v for k, v in filters.items()):
            continue
        uuids.append(rec["uuid"])
        rows.append([(name, mode, _show(get(rec))) for name, mode, get in shown])
    if args.minimal:
        return ",".join(uuids) + "\n"
    return format_records(rows)


# -- commands ----------------------------------------------------------------------
def _ref(pool, cls, args, key="uuid"):
    return pool.by_uuid(cls, args.need(key))


def _host(pool, args):
    uuid = args.get("host-uuid")
    return pool.by_uuid("host", uuid) if uuid else None


def _uuid_of(pool, cls, ref):
    return pool.record(cls, ref)["uuid"] + "\n"


def sr_create(pool, a):
    ref = pool.sr_create(a.need("type"), a.map("device-config"),
                         name_label=a.get("name-label", ""),
                         name_description=a.get("name-description", ""),
                         shared=parse_bool(a.get("shared", "false")),
                         physical_size=parse_size(a.get("physical-size", "0")),
                         host=_host(pool, a), content_type=a.get("content-type", ""),
                         sm_config=a.map("sm-config"))
    return _uuid_of(pool, "SR", ref)


def sr_introduce(pool, a):
    ref = pool.sr_introduce(a.need("uuid"), a.need("type"), name_label=a.get("name-label", ""),
                            name_description=a.get("name-description", ""),
                            shared=parse_bool(a.get("shared", "false")),
                            content_type=a.get("content-type", ""),
                            sm_config=a.map("sm-config"))
    return _uuid_of(pool, "SR", ref)


def pbd_create(pool, a):
    ref = pool.pbd_create(_ref(pool, "host", a, "host-uuid"), _ref(pool, "SR", a, "sr-uuid"),
                          a.map("device-config"))
    return _uuid_of(pool, "PBD", ref)


def vdi_create(pool, a):
    ref = pool.vdi_create(_ref(pool, "SR", a, "sr-uuid"), parse_size(a.need("virtual-size")),
                          name_label=a.get("name-label", ""),
                          name_description=a.get("name-description", ""),
                          type=a.get("type", "user"), sm_config=a.map("sm-config"),
                          read_only=parse_bool(a.get("read-only", "false")),
                          sharable=parse_bool(a.get("sharable", "false")),
                          other_config=a.map("other-config"))
    return _uuid_of(pool, "VDI", ref)


def vdi_snapshot(pool, a):
    return _uuid_of(pool, "VDI", pool.vdi_snapshot(_ref(pool, "VDI", a),
                                                   a.map("driver-params")))


def vdi_clone(pool, a):
    ref = pool.vdi_clone(_ref(pool, "VDI", a), a.map("driver-params"))
    label = a.get("new-name-label")
    if label is not None:
        pool.db.update("VDI", ref, name_label=label)
    return _uuid_of(pool, "VDI", ref)


def vdi_introduce(pool, a):
    ref = pool.vdi_introduce(_ref(pool, "SR", a, "sr-uuid"), a.need("uuid"),
                             a.need("location"), sm_config=a.map("sm-config"))
    return _uuid_of(pool, "VDI", ref)


def vdi_attach(pool, a):
    mode = a.get("mode", "RW").upper()
    if mode not in ("RW", "RO"):
        raise UsageError("mode must be RW or RO")
    result = pool.vdi_attach(_ref(pool, "VDI", a), host=_host(pool, a), writable=mode == "RW")
    return (result.get("params") or result.get("params_nbd") or "") + "\n"


def vdi_copy(pool, a):
    from simulator.vdi_copy import vdi_copy as copy
    return _uuid_of(pool, "VDI", copy(pool, _ref(pool, "VDI", a), _ref(pool, "SR", a, "sr-uuid")))


def _export(name, pool, a):
    from simulator import export
    try:
        return export.run(pool, name, a)
    except export.ExportFailed as e:  # the host command has said why on stderr
        raise SystemExit(e.status)


def _done(fn):
    def run(pool, a):
        fn(pool, a)
        return ""
    return run


COMMANDS = {
    "sm-list": (lambda p, a: list_records(p, "SM", a) if p.sm_list() is not None else "",
                "list the SM drivers"),
    "sm-param-list": (lambda p, a: param_list(p, "SM", a),
                      "uuid=: all fields of a driver"),
    "host-list": (lambda p, a: list_records(p, "host", a), "list hosts"),
    "sr-create": (sr_create, "type= name-label= shared= physical-size= device-config:k=v "
                             "host-uuid= content-type= sm-config:k=v"),
    "sr-probe": (lambda p, a: p.sr_probe(a.need("type"), a.map("device-config"),
                                         a.map("sm-config"), _host(p, a)) + "\n",
                 "type= device-config:k=v sm-config:k=v host-uuid="),
    "sr-scan": (_done(lambda p, a: p.sr_scan(_ref(p, "SR", a))), "uuid="),
    "sr-update": (_done(lambda p, a: p.sr_update(_ref(p, "SR", a))), "uuid="),
    "sr-list": (lambda p, a: list_records(p, "SR", a), "list SRs (filters: field=value)"),
    "sr-param-list": (lambda p, a: param_list(p, "SR", a), "uuid="),
    "sr-introduce": (sr_introduce, "uuid= type= name-label= shared= content-type="),
    "sr-forget": (_done(lambda p, a: p.sr_forget(_ref(p, "SR", a))), "uuid="),
    "sr-destroy": (_done(lambda p, a: p.sr_destroy(_ref(p, "SR", a))), "uuid="),
    "pbd-create": (pbd_create, "host-uuid= sr-uuid= device-config:k=v"),
    "pbd-plug": (_done(lambda p, a: p.pbd_plug(_ref(p, "PBD", a))), "uuid="),
    "pbd-unplug": (_done(lambda p, a: p.pbd_unplug(_ref(p, "PBD", a))), "uuid="),
    "pbd-list": (lambda p, a: list_records(p, "PBD", a), "list PBDs"),
    "vdi-create": (vdi_create, "sr-uuid= name-label= virtual-size= type= sm-config:k=v"),
    "vdi-list": (lambda p, a: list_records(p, "VDI", a), "list VDIs (filters: field=value)"),
    "vdi-param-list": (lambda p, a: param_list(p, "VDI", a), "uuid="),
    "vdi-snapshot": (vdi_snapshot, "uuid= driver-params:k=v"),
    "vdi-clone": (vdi_clone, "uuid= new-name-label= driver-params:k=v"),
    "vdi-resize": (_done(lambda p, a: p.vdi_resize(_ref(p, "VDI", a),
                                                   parse_size(a.need("disk-size")))),
                   "uuid= disk-size="),
    "vdi-destroy": (_done(lambda p, a: p.vdi_destroy(_ref(p, "VDI", a))), "uuid="),
    "vdi-enable-cbt": (_done(lambda p, a: p.vdi_enable_cbt(_ref(p, "VDI", a))), "uuid="),
    "vdi-disable-cbt": (_done(lambda p, a: p.vdi_disable_cbt(_ref(p, "VDI", a))), "uuid="),
    "vdi-data-destroy": (_done(lambda p, a: p.vdi_data_destroy(_ref(p, "VDI", a))),
                         "uuid=: keep only the CBT metadata of a snapshot"),
    "vdi-list-changed-blocks": (
        lambda p, a: p.vdi_list_changed_blocks(_ref(p, "VDI", a, "vdi-from-uuid"),
                                               _ref(p, "VDI", a, "vdi-to-uuid")) + "\n",
        "vdi-from-uuid= vdi-to-uuid=: base64 bitmap, one bit per 64 KiB"),
    "vdi-update": (_done(lambda p, a: p.vdi_update(_ref(p, "VDI", a))), "uuid="),
    "vdi-introduce": (vdi_introduce, "sr-uuid= uuid= location= sm-config:k=v"),
    "vdi-copy": (vdi_copy, "uuid= sr-uuid=: a new VDI on that SR with the same data, "
                           "name and description; prints its uuid"),
    "vdi-export": (lambda p, a: _export("vdi-export", p, a),
                   "uuid= filename=|- format=raw|vhd|qcow2 compression=zstd[:level]|none "
                   "base=<snapshot uuid>"),
    "vdi-import": (lambda p, a: _export("vdi-import", p, a),
                   "uuid= filename=|- [format=]; or (srkit extension) sr-uuid= filename= "
                   "name-label=: creates the VDI, prints its uuid"),
    "secret-create": (lambda p, a: p.secret_create(a.need("value")) + "\n", "value="),
    # srkit extensions (not in xe): a dom0 plug / unplug of a VDI
    "vdi-attach": (vdi_attach, "[srkit extension] uuid= host-uuid= mode=RW|RO; prints the "
                               "device path"),
    "vdi-detach": (_done(lambda p, a: p.vdi_detach(_ref(p, "VDI", a), host=_host(p, a))),
                   "[srkit extension] uuid= host-uuid="),
}


def usage():
    return "usage: srkit xe <command> [key=value ...] [--minimal]\n\ncommands:\n" + "".join(
        "  %-15s %s\n" % (name, text) for name, (_, text) in sorted(COMMANDS.items()))


def main(argv):
    if not argv or argv[0] in ("help", "-h", "--help"):
        sys.stdout.write(usage())
        return 0 if argv else 1
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        sys.stderr.write("Unknown command: %s\nFor usage run: 'srkit xe help'\n" % name)
        return 1
    from simulator.cli import pool_dir
    from simulator.pool import Pool
    try:
        args = Args(rest)
        with Pool(pool_dir()) as pool:
            out = COMMANDS[name][0](pool, args)
    except UsageError as e:
        sys.stderr.write("Error: %s\n" % e)
        return 1
    except XapiError as e:
        sys.stderr.write("Error code: %s\nError parameters: %s\n"
                         % (e.code, ", ".join(e.params)))
        return 1
    sys.stdout.write(out)
    return 0
