"""The SMAPIv1 conformance suite (simulator/conformance) passes against
sm_drivers/RBDSR on the real cluster, with two hosts and a shared SR."""
from simulator.conformance import outcome

# RBDSR advertises snapshot, clone, resize and activate: only the check for drivers
# that lack one of them has nothing to test
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi"}


def test_conformance_suite_passes_on_rbd(ceph_env, tmp_path):
    dc = {"monitors": ceph_env["SRKIT_CEPH_MONITORS"], "user": ceph_env["SRKIT_CEPH_USER"],
          "key": ceph_env["SRKIT_CEPH_KEY"], "pool": ceph_env.get("SRKIT_CEPH_POOL", "rbd"),
          "datapath": "fuse"}
    outcome.run("RBDSR", dc, tmp_path, hosts=2).assert_green(EXPECTED_SKIPS)
