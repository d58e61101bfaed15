"""The SMAPIv1 conformance suite (simulator/conformance) passes against
sm_drivers/ZFSVolSR on real OpenZFS."""
import os

import pytest

from simulator.conformance import outcome

# ~19 min of the guest's time under TCG (every driver call spawns python and zfs
# commands in an emulated CPU): one of the guest's long rows, which ./dev test runs only
# with SRKIT_LONG=1 or SRKIT_ZFS_CONFORMANCE=1.
pytestmark = [pytest.mark.zfs, pytest.mark.skipif(
    os.environ.get("SRKIT_ZFS_CONFORMANCE") == "0",
    reason="SRKIT_ZFS_CONFORMANCE=0")]
# ZFSVolSR advertises snapshot, clone, resize, revert and CBT but no activate
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi",
                  "test_activate_and_deactivate_twice",
                  "test_data_visible_from_every_host_of_a_shared_sr"}


def test_conformance_suite_passes_on_zfsvol(zpool, tmp_path):
    result = outcome.run("ZFSVolSR", {"pool": zpool}, tmp_path, timeout=3600)
    result.assert_green(EXPECTED_SKIPS, min_passed=50)
    print("conformance: %d passed, skipped %s" % (len(result.passed), sorted(result.skipped)))
