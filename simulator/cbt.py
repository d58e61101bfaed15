"""Changed block tracking as xapi does it around the SMAPIv1 commands.

xapi checks a VDI before it asks the driver (``Xapi_vdi.check_operation_error``):
the SM feature first (SR_OPERATION_NOT_SUPPORTED), then what a ``cbt_metadata``
VDI (a snapshot whose data was destroyed) may still do, then the per-operation
rules. The driver does the work; xapi then records the outcome: ``cbt_enabled``
after enable/disable, type ``cbt_metadata`` after data_destroy. Enable/disable of
a VDI already in that state is a no-op that never reaches the driver.

:func:`assert_operation` is also used by the other VDI flows of the pool
(snapshot, clone, resize, attach) so that one place knows what a
``cbt_metadata`` VDI may not do.
"""
from simulator.errors import XapiError

# operations a cbt_metadata VDI still allows (everything else: VDI_INCOMPATIBLE_TYPE)
ALLOWED_FOR_CBT_METADATA = frozenset(("data_destroy", "destroy", "list_changed_blocks",
                                      "forget", "generate_config", "update"))
# the pool operation name -> the SM command it runs (for the feature check)
COMMAND = {"enable_cbt": "vdi_enable_cbt", "disable_cbt": "vdi_disable_cbt",
           "data_destroy": "vdi_data_destroy", "list_changed_blocks": "vdi_list_changed_blocks"}


def assert_operation(pool, vdi, op):
    """Raise what xapi raises before ``op`` (xapi's operation name) on ``vdi``."""
    rec = pool.vdi_record(vdi)
    sr_type = pool.sr_record(rec["SR"])["type"]
    if op in COMMAND:
        pool._require(sr_type, COMMAND[op], rec["SR"])
    if rec["type"] == "cbt_metadata" and op not in ALLOWED_FOR_CBT_METADATA:
        raise XapiError("VDI_INCOMPATIBLE_TYPE", [vdi, "cbt_metadata"])
    if op == "data_destroy":
        if not rec["is_a_snapshot"]:
            raise XapiError("OPERATION_NOT_ALLOWED", ["VDI is not a snapshot: " + vdi])
        if not rec["cbt_enabled"]:
            raise XapiError("VDI_NO_CBT_METADATA", [vdi])
    elif op in ("enable_cbt", "disable_cbt"):
        if rec["is_a_snapshot"]:
            raise XapiError("OPERATION_NOT_ALLOWED", ["VDI is a snapshot: " + vdi])
        if rec["type"] not in ("user", "system"):
            raise XapiError("VDI_INCOMPATIBLE_TYPE", [vdi, rec["type"]])
        if rec["on_boot"] == "reset":
            raise XapiError("VDI_ON_BOOT_MODE_INCOMPATIBLE_WITH_OPERATION", [])
    return rec


def set_enabled(pool, vdi, enabled):
    """``VDI.enable_cbt`` / ``VDI.disable_cbt``."""
    op = "enable_cbt" if enabled else "disable_cbt"
    rec = assert_operation(pool, vdi, op)
    if rec["cbt_enabled"] == enabled:
        pool.log("VDI.%s %s: CBT is already %s" % (op, vdi, "on" if enabled else "off"))
        return
    pool._vdi_op(vdi, COMMAND[op])
    pool.db.update("VDI", vdi, cbt_enabled=enabled)


def data_destroy(pool, vdi):
    """``VDI.data_destroy``: the driver frees the data, xapi retypes the record."""
    assert_operation(pool, vdi, "data_destroy")
    pool.nbd.close(vdi)  # xapi waits for the VDI's plugs to go; a backup's export is one
    if pool.db.find("datapath", VDI=vdi):
        raise XapiError("VDI_IN_USE", [vdi, "data_destroy"])
    pool._vdi_op(vdi, "vdi_data_destroy")
    pool.db.update("VDI", vdi, type="cbt_metadata")


def list_changed_blocks(pool, vdi_from, vdi_to):
    """``VDI.list_changed_blocks``: the base64 bitmap the driver returns, untouched.

    xapi asserts both VDIs are on one SR with an exception it does not translate
    (Storage_interface.Vdis_on_different_srs), which reaches the client as an
    INTERNAL_ERROR; the simulator reports it the same way."""
    rec_from = pool.vdi_record(vdi_from)
    rec_to = assert_operation(pool, vdi_to, "list_changed_blocks")
    if rec_from["SR"] != rec_to["SR"]:
        raise XapiError("INTERNAL_ERROR", ["Storage_interface.Vdis_on_different_srs(%s, %s)"
                                           % (vdi_from, vdi_to)])
    return pool._vdi_op(vdi_from, "vdi_list_changed_blocks", args=[vdi_to])
