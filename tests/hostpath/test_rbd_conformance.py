"""The SMAPIv1 conformance suite (simulator/conformance) against sm_drivers/RBDSR on the
kernel datapaths, with two hosts and a shared SR: every attach of the suite is a real
/dev/nbdN (rbd-nbd) or /dev/rbdN (krbd). `auto` picks rbd-nbd here
(test_rbd_datapaths.py), so its run would be the nbd one again."""
import os

import pytest

from simulator.conformance import outcome

# the longest part of the guest's rbd suite (every driver call is a python start under
# TCG): one of the guest's long rows (./dev test: SRKIT_LONG=1 or SRKIT_RBD_CONFORMANCE=1)
pytestmark = [pytest.mark.hostpath, pytest.mark.skipif(
    os.environ.get("SRKIT_RBD_CONFORMANCE") == "0", reason="SRKIT_RBD_CONFORMANCE=0")]

# RBDSR advertises snapshot, clone, resize and activate: only the check for drivers
# that lack one of them has nothing to test
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi"}


@pytest.mark.parametrize("datapath", ["nbd", "krbd"])
def test_conformance_suite_passes_on_the_kernel_datapaths(device_config, tmp_path, datapath):
    result = outcome.run("RBDSR", dict(device_config, datapath=datapath), tmp_path, hosts=2,
                         timeout=3600)
    result.assert_green(EXPECTED_SKIPS)
