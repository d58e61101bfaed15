"""The SMAPIv1 conformance suite (simulator/conformance) passes against
sm_drivers/ZFSVolSR on real OpenZFS."""
import os

import pytest

from simulator.conformance import outcome

# Opt-in (SRKIT_ZFS_CONFORMANCE=1, exported before ./dev test: the guest inherits it)
# until it completes green under TCG on a 2-core machine: issue 7 stays open for it.
pytestmark = [pytest.mark.zfs, pytest.mark.skipif(
    os.environ.get("SRKIT_ZFS_CONFORMANCE") != "1",
    reason="not yet green in the TCG guest (issue 7): opt in with SRKIT_ZFS_CONFORMANCE=1")]
# ZFSVolSR advertises snapshot, clone, resize and revert but no activate
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi",
                  "test_activate_and_deactivate_twice",
                  "test_data_visible_from_every_host_of_a_shared_sr"}


def test_conformance_suite_passes_on_zfsvol(zpool, tmp_path):
    result = outcome.run("ZFSVolSR", {"pool": zpool}, tmp_path, timeout=3600)
    result.assert_green(EXPECTED_SKIPS, min_passed=50)
    print("conformance: %d passed, skipped %s" % (len(result.passed), sorted(result.skipped)))
