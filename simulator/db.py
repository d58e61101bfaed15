"""Pool state in SQLite: one file per pool, one row per object, records as JSON.

Records look like XenAPI records (field names of the XenAPI datamodel).
int64 fields are stored as decimal strings and date-times as ISO-8601 strings,
as they travel on the XenAPI XML-RPC wire. Reverse links (``SR.VDIs``,
``SR.PBDs``, ``VDI.snapshots``, ``host.PBDs``) are not stored: they are computed
when a record is read, so they can never go stale.

Every public method is one short transaction. ``transaction()`` groups a
check-then-write (e.g. "location must be unique") into one.
"""
import contextlib
import copy
import json
import sqlite3
import threading
import uuid as uuidlib

from simulator.errors import XapiError

NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"

VDI_TYPES = ("system", "user", "ephemeral", "suspend", "crashdump", "ha_statefile",
             "metadata", "redo_log", "rrd", "pvs_cache", "cbt_metadata")

# Every stored field of every class, with its default.
DEFAULTS = {
    "pool": dict(uuid="", name_label="", name_description="", master=NULL_REF,
                 default_SR=NULL_REF, other_config={}),
    "host": dict(uuid="", name_label="", name_description="", hostname="", address="",
                 other_config={}, API_version_major="2", API_version_minor="21",
                 software_version={"product_version": "8.3.0", "xapi": "26.1.4"},
                 local_cache_sr=NULL_REF, enabled=True),
    "SM": dict(uuid="", name_label="", name_description="", type="", vendor="",
               copyright="", version="", required_api_version="", configuration={},
               capabilities=[], features={}, other_config={}, driver_filename="",
               required_cluster_stack=[]),
    "SR": dict(uuid="", name_label="", name_description="", allowed_operations=[],
               current_operations={}, virtual_allocation="0", physical_utilisation="0",
               physical_size="0", type="", content_type="", shared=False, other_config={},
               tags=[], sm_config={}, blobs={}, local_cache_enabled=False,
               introduced_by=NULL_REF, clustered=False, is_tools_sr=False),
    "PBD": dict(uuid="", host=NULL_REF, SR=NULL_REF, device_config={},
                currently_attached=False, other_config={}),
    "VDI": dict(uuid="", name_label="", name_description="", allowed_operations=[],
                current_operations={}, SR=NULL_REF, VBDs=[], crash_dumps=[],
                virtual_size="0", physical_utilisation="0", type="user", sharable=False,
                read_only=False, other_config={}, storage_lock=False, location="",
                managed=True, missing=False, parent=NULL_REF, xenstore_data={},
                sm_config={}, is_a_snapshot=False, snapshot_of=NULL_REF,
                snapshot_time=EPOCH, tags=[], allow_caching=False, on_boot="persist",
                metadata_of_pool=NULL_REF, metadata_latest=False, is_tools_iso=False,
                cbt_enabled=False),
    "secret": dict(uuid="", value="", other_config={}),
    "session": dict(uuid="", this_host=NULL_REF, this_user=NULL_REF, last_active=EPOCH,
                    pool=False, other_config={}, is_local_superuser=True,
                    auth_user_name="", originator=""),
    "message": dict(uuid="", name="", priority="0", cls="", obj_uuid="",
                    timestamp=EPOCH, body=""),
    # simulator bookkeeping, not a XenAPI class: a VDI plugged into dom0 of a host
    "datapath": dict(uuid="", VDI=NULL_REF, host=NULL_REF, writable=True, active=False),
}

# computed reverse links: (class, field) -> (other class, field pointing back)
_BACKLINKS = {
    ("SR", "VDIs"): ("VDI", "SR"),
    ("SR", "PBDs"): ("PBD", "SR"),
    ("VDI", "snapshots"): ("VDI", "snapshot_of"),
    ("host", "PBDs"): ("PBD", "host"),
}


def new_ref():
    return "OpaqueRef:%s" % uuidlib.uuid4()


def new_uuid():
    return str(uuidlib.uuid4())


class DB:
    """The pool database. Safe to use from several threads (one connection each)
    and several processes (WAL, busy timeout)."""

    def __init__(self, path):
        self.path = str(path)
        self._local = threading.local()
        with self._conn() as c:
            c.execute("CREATE TABLE IF NOT EXISTS objects (ref TEXT PRIMARY KEY,"
                      " cls TEXT NOT NULL, uuid TEXT NOT NULL, data TEXT NOT NULL)")
            c.execute("CREATE INDEX IF NOT EXISTS objects_cls ON objects (cls, uuid)")

    # -- plumbing -----------------------------------------------------------
    def _conn(self):
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            self._local.depth = 0
        return _Tx(conn, self._local)

    @contextlib.contextmanager
    def transaction(self):
        """Group several reads/writes into one atomic step (re-entrant)."""
        with self._conn() as c:
            yield c

    def close(self):
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def _row(self, c, ref):
        row = c.execute("SELECT cls, data FROM objects WHERE ref=?", (ref,)).fetchone()
        return (row[0], json.loads(row[1])) if row else (None, None)

    def _complete(self, c, cls, ref, rec, links=None):
        links = links if links is not None else self._links(c, cls)
        for field, by_target in links.items():
            rec[field] = list(by_target.get(ref, ()))
        return rec

    def _links(self, c, cls):
        """{reverse field: {target ref: [referring refs]}} for ``cls``, one scan each,
        so listing n records costs O(n) rather than O(n^2)."""
        links = {}
        for (kcls, field), (ocls, ofield) in _BACKLINKS.items():
            if kcls == cls:
                by_target = links.setdefault(field, {})
                for r, o in self._scan(c, ocls):
                    by_target.setdefault(o.get(ofield), []).append(r)
        return links

    def _scan(self, c, cls):
        rows = c.execute("SELECT ref, data FROM objects WHERE cls=? ORDER BY rowid", (cls,))
        return [(ref, json.loads(data)) for ref, data in rows.fetchall()]

    # -- API ----------------------------------------------------------------
    def create(self, klass, ref=None, **fields):
        rec = copy.deepcopy(DEFAULTS[klass])
        unknown = set(fields) - set(rec)
        if unknown:
            raise ValueError("unknown %s fields: %s" % (klass, sorted(unknown)))
        rec.update(fields)
        rec["uuid"] = rec["uuid"] or new_uuid()
        ref = ref or new_ref()
        with self._conn() as c:
            c.execute("INSERT INTO objects (ref, cls, uuid, data) VALUES (?,?,?,?)",
                      (ref, klass, rec["uuid"], json.dumps(rec)))
        return ref

    def exists(self, cls, ref):
        with self._conn() as c:
            return self._row(c, ref)[0] == cls

    def get(self, cls, ref):
        """The full record (with computed reverse links); HANDLE_INVALID if unknown."""
        with self._conn() as c:
            found, rec = self._row(c, ref)
            if found != cls:
                raise XapiError("HANDLE_INVALID", [cls, ref])
            return self._complete(c, cls, ref, rec)

    def by_uuid(self, cls, uuid):
        """The ref of the object with that uuid; UUID_INVALID if none."""
        with self._conn() as c:
            row = c.execute("SELECT ref FROM objects WHERE cls=? AND uuid=?",
                            (cls, uuid)).fetchone()
        if not row:
            raise XapiError("UUID_INVALID", [cls, uuid])
        return row[0]

    def all(self, cls):
        """[(ref, record)] in creation order (records with reverse links)."""
        with self._conn() as c:
            links = self._links(c, cls)
            return [(r, self._complete(c, cls, r, rec, links)) for r, rec in self._scan(c, cls)]

    def refs(self, cls):
        with self._conn() as c:
            return [r for (r,) in c.execute(
                "SELECT ref FROM objects WHERE cls=? ORDER BY rowid", (cls,)).fetchall()]

    def stored(self, cls):
        """[(ref, record)] without reverse links: the cheap scan for checks."""
        with self._conn() as c:
            return self._scan(c, cls)

    def find(self, cls, **eq):
        """Refs of the objects whose stored fields equal all of ``eq``."""
        with self._conn() as c:
            return [r for r, rec in self._scan(c, cls)
                    if all(rec.get(k) == v for k, v in eq.items())]

    def update(self, cls, ref, **fields):
        return self.mutate(cls, ref, lambda rec: rec.update(fields))

    def mutate(self, cls, ref, fn):
        """Apply ``fn(record)`` (in place) atomically."""
        with self._conn() as c:
            found, rec = self._row(c, ref)
            if found != cls:
                raise XapiError("HANDLE_INVALID", [cls, ref])
            fn(rec)
            for field, _ in [k for k in _BACKLINKS if k[0] == cls]:
                rec.pop(field, None)
            c.execute("UPDATE objects SET data=?, uuid=? WHERE ref=?",
                      (json.dumps(rec), rec["uuid"], ref))
            return rec

    def delete(self, cls, ref):
        with self._conn() as c:
            cur = c.execute("DELETE FROM objects WHERE ref=? AND cls=?", (ref, cls))
            if cur.rowcount == 0:
                raise XapiError("HANDLE_INVALID", [cls, ref])


class _Tx:
    """Re-entrant BEGIN IMMEDIATE ... COMMIT on a thread's connection."""

    def __init__(self, conn, local):
        self.conn, self.local = conn, local

    def __enter__(self):
        if self.local.depth == 0:
            self.conn.execute("BEGIN IMMEDIATE")
        self.local.depth += 1
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        self.local.depth -= 1
        if self.local.depth == 0:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        return False
