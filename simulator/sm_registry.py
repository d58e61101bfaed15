"""Which SM drivers the pool knows: discovery of the plugins in ``sm_dir`` as at
xapi start-up (§1.2), the SM records it leaves, and the feature checks xapi makes
before it asks a driver for an operation (§1.4)."""
import os

from simulator import sm_exec
from simulator.errors import XapiError

# Pool operation -> the SM feature xapi requires before asking the driver (§1.4)
REQUIRED_FEATURE = {
    "sr_probe": "SR_PROBE", "sr_scan": "SR_SCAN", "sr_update": "SR_UPDATE",
    "sr_delete": "SR_DELETE", "vdi_create": "VDI_CREATE", "vdi_introduce": "VDI_INTRODUCE",
    "vdi_delete": "VDI_DELETE", "vdi_resize": "VDI_RESIZE", "vdi_snapshot": "VDI_SNAPSHOT",
    "vdi_clone": "VDI_CLONE", "vdi_revert": "VDI_CLONE", "vdi_update": "VDI_UPDATE",
    "vdi_generate_config": "VDI_GENERATE_CONFIG", "vdi_enable_cbt": "VDI_CONFIG_CBT",
    "vdi_disable_cbt": "VDI_CONFIG_CBT", "vdi_data_destroy": "VDI_CONFIG_CBT",
    "vdi_list_changed_blocks": "VDI_CONFIG_CBT",
}


class SmRegistry:
    """Mixin for :class:`simulator.pool.Pool`: needs ``db``, ``config``, ``log``,
    ``master``, ``records`` and ``_exec``."""

    def _whitelisted(self, driver):
        names = str(self.config["sm_plugins"]).lower().split()
        return "*" in names or driver.lower() in names

    def discover(self):
        """Re-read the drivers of sm_dir like a toolstack restart; returns
        ``{driver: reason}`` for the plugins that were skipped or rejected."""
        sm_dir = self.config["sm_dir"]
        rejected, found = {}, {}
        entries = sorted(os.listdir(sm_dir)) if os.path.isdir(sm_dir) else []
        for entry in entries:
            if not entry.endswith("SR") or entry == "SR":
                continue
            driver = entry[:-2]
            path = os.path.join(sm_dir, entry)
            if not self._whitelisted(driver):
                rejected[driver] = "not in sm-plugins whitelist"
            elif not os.access(path, os.X_OK):
                rejected[driver] = "not executable"
            else:
                try:
                    found[driver.lower()] = self._driver_info(path)
                    found[driver.lower()]["driver_filename"] = path
                except (XapiError, ValueError, OSError) as e:
                    rejected[driver] = "rejected: %s" % e
        for driver, reason in rejected.items():
            self.log("Skipping/Rejecting SM plugin %s: %s" % (driver, reason))
        with self.db.transaction():
            used = {rec["type"] for rec in self.records("SR")}
            for ref, rec in self.db.all("SM"):
                if rec["type"] in found:
                    self.db.update("SM", ref, **found.pop(rec["type"]))
                elif rec["type"] not in used or not os.path.exists(rec["driver_filename"]):
                    self.db.delete("SM", ref)
            for sm_type, fields in found.items():
                self.db.create("SM", type=sm_type, **fields)
        self.rejected_drivers = rejected
        return rejected

    def _driver_info(self, path):
        rec = self._exec(path, "sr_get_driver_info", {"host_ref": self.master,
                                                       "device_config": {}}, self.master)
        return sm_exec.parse_driver_info(rec.result)

    def sm_list(self, refresh=False):
        """SM records (discovering drivers first if none are known or ``refresh``)."""
        if refresh or not self.db.refs("SM"):
            self.discover()
        return self.records("SM")

    def _sm(self, sr_type):
        refs = self.db.find("SM", type=sr_type)
        if not refs:
            self.discover()
            refs = self.db.find("SM", type=sr_type)
        if not refs:
            raise XapiError("SR_UNKNOWN_DRIVER", [sr_type])
        return self.db.get("SM", refs[0])

    def features(self, sr_type):
        return self._sm(sr_type)["features"]

    def _require(self, sr_type, op, sr=""):
        feature = REQUIRED_FEATURE.get(op)
        if feature and feature not in self.features(sr_type):
            if op == "sr_probe":
                raise XapiError("SR_BACKEND_FAILURE",
                                ["Operation 'sr_probe' not supported by this SR type", "", ""])
            raise XapiError("SR_OPERATION_NOT_SUPPORTED", [sr])
