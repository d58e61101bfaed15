"""The XenAPI calls a client (a backup tool, XO, ``XenAPI.Session``, the host's
``srkit vdi-import``) makes that
run the storage flows: ``VDI.create``, ``VDI.snapshot``, ``VDI.clone``, ``VDI.destroy``,
``VDI.resize``, the CBT calls, ``VDI.get_nbd_info`` and ``SR.scan``.

Each one is the pool's flow (:class:`simulator.pool.Pool`), the very code path
``srkit xe`` runs, so a driver cannot tell a XenAPI client from the CLI. Records,
getters and ``get_all_records`` are :class:`simulator.xapi_api.XapiApi`'s generic
accessors. Synchronous calls only (no ``Async.*`` tasks).
"""
from simulator.errors import XapiError


# VDI.create's record fields that Pool.vdi_create takes (xapi fills or ignores the
# rest: location, physical_utilisation, ...)
_CREATE_FIELDS = ("name_label", "name_description", "type", "sm_config", "read_only",
                  "sharable", "other_config")


def _int64(method, value):
    """An int64 parameter as it travels in xapi's XML-RPC (a decimal string)."""
    try:
        if isinstance(value, bool):
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise XapiError("FIELD_TYPE_ERROR", ["size"])


class ClientCalls(object):
    """``call(cls, name, session, args)`` for the methods below, or None when the
    method is not one of them (the caller falls back to generic accessors)."""

    def __init__(self, pool):
        self.pool = pool
        self._calls = self._table()

    # name -> (number of arguments after the session, handler)
    def _table(self):
        p = self.pool
        return {
            "VDI.create": ((1,), lambda s, a: self._create(a[0])),
            "VDI.snapshot": ((1, 2), lambda s, a: p.vdi_snapshot(self._vdi(a[0]), _map(a, 1))),
            "VDI.clone": ((1, 2), lambda s, a: p.vdi_clone(self._vdi(a[0]), _map(a, 1))),
            "VDI.destroy": ((1,), lambda s, a: _nil(p.vdi_destroy(self._vdi(a[0])))),
            "VDI.resize": ((2,), lambda s, a: _nil(p.vdi_resize(self._vdi(a[0]),
                                                                _int64("VDI.resize", a[1])))),
            "VDI.enable_cbt": ((1,), lambda s, a: _nil(p.vdi_enable_cbt(self._vdi(a[0])))),
            "VDI.disable_cbt": ((1,), lambda s, a: _nil(p.vdi_disable_cbt(self._vdi(a[0])))),
            "VDI.data_destroy": ((1,), lambda s, a: _nil(p.vdi_data_destroy(self._vdi(a[0])))),
            "VDI.list_changed_blocks": ((2,), lambda s, a: p.vdi_list_changed_blocks(
                self._vdi(a[0]), self._vdi(a[1]))),
            "VDI.get_nbd_info": ((1,), lambda s, a: p.nbd.get_nbd_info(self._vdi(a[0]), s)),
            "SR.scan": ((1,), lambda s, a: _nil(p.sr_scan(self._sr(a[0])))),
        }

    def handles(self, method):
        return method in self._calls

    def call(self, method, session, args):
        counts, fn = self._calls[method]
        if len(args) not in counts:
            raise XapiError("MESSAGE_PARAMETER_COUNT_MISMATCH",
                            [method, str(max(counts) + 1), str(len(args) + 1)])
        return fn(session, list(args))

    def _create(self, rec):
        """VDI.create(record): the host's ``srkit vdi-import sr-uuid=`` creates its VDI
        (and destroys it after a failed import) this way."""
        if not isinstance(rec, dict):
            raise XapiError("FIELD_TYPE_ERROR", ["VDI record"])
        sr = self._sr(rec.get("SR", ""))
        size = _int64("VDI.create", rec.get("virtual_size", ""))
        fields = dict((k, rec[k]) for k in _CREATE_FIELDS if k in rec)
        return self.pool.vdi_create(sr, size, **fields)

    def _vdi(self, ref):
        self.pool.vdi_record(ref)  # HANDLE_INVALID for a stale or foreign ref
        return ref

    def _sr(self, ref):
        self.pool.sr_record(ref)
        return ref


def _map(args, i):
    value = args[i] if len(args) > i else {}
    if not isinstance(value, dict):
        raise XapiError("FIELD_TYPE_ERROR", ["driver_params"])
    return {str(k): str(v) for k, v in value.items()}


def _nil(_):
    return ""
