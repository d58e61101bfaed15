"""The SMAPIv1 conformance suite (simulator/conformance) passes against
sm_drivers/GlusterSR on the real glusterd, with two hosts and a shared SR."""
from simulator.conformance import outcome

# GlusterSR advertises snapshot, clone and resize: only the check for drivers that
# lack one of them has nothing to test
# no VDI_CONFIG_CBT (docs/cbt.md): the CBT checks other than the refusal skip
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi",
                  "test_changed_blocks_cover_every_write_over_generations",
                  "test_a_data_destroyed_snapshot_is_metadata_only_and_scan_keeps_it",
                  "test_unrelated_pairs_give_460_and_change_nothing"}


def test_conformance_suite_passes_on_gluster(gluster_env, tmp_path):
    dc = {"server": "%s:/%s" % (gluster_env["SRKIT_GLUSTER_HOST"],
                                gluster_env["SRKIT_GLUSTER_VOLUME"]),
          "backupservers": gluster_env["SRKIT_GLUSTER_BRICK_HOST"]}
    outcome.run("GlusterSR", dc, tmp_path, hosts=2).assert_green(EXPECTED_SKIPS)
