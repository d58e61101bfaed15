"""``VDI.create`` and ``VDI.destroy`` as xapi serves them to clients (the host's
``srkit vdi-import sr-uuid=`` creates its VDI, and removes it after a failed
import, this way): the SR's driver does the work through the pool's flows
(``Pool.vdi_create`` / ``Pool.vdi_destroy``), as ``xe vdi-create`` does.

The XenAPI methods without a driver behind them live in simulator/xapi_api.py;
:func:`serve` adds these two to a server's ``XapiApi`` for the pool that owns it.
"""
from simulator.errors import XapiError

# VDI.create's record fields that Pool.vdi_create takes (the rest xapi ignores
# or fills itself: location, physical_utilisation, ...)
_CREATE_FIELDS = ("name_label", "name_description", "type", "sm_config", "read_only",
                  "sharable", "other_config")


def serve(api, pool):
    """Let ``api`` (an XapiApi) answer VDI.create and VDI.destroy through ``pool``."""
    def create(session, srec, method, args):
        api._arity(method, args, 1)
        rec = args[0]
        if not isinstance(rec, dict):
            raise XapiError("FIELD_TYPE_ERROR", ["VDI record"])
        sr = rec.get("SR", "")
        if not api.db.exists("SR", sr):
            raise XapiError("HANDLE_INVALID", ["SR", str(sr)])
        size = api._coerce("virtual_size", rec.get("virtual_size", ""))
        fields = dict((k, rec[k]) for k in _CREATE_FIELDS if k in rec)
        return pool.vdi_create(sr, int(size), **fields)

    def destroy(session, srec, method, args):
        api._arity(method, args, 1)
        api.db.get("VDI", args[0])  # HANDLE_INVALID
        pool.vdi_destroy(args[0])
        return ""
    api._VDI_create = create
    api._VDI_destroy = destroy
