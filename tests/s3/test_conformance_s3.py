"""The SMAPIv1 conformance suite (simulator/conformance) passes against sm_drivers/S3SR
on the real S3 server, with two hosts and a shared SR."""
import os

from simulator.conformance import outcome

# S3SR advertises snapshot, clone, resize and activate
EXPECTED_SKIPS = {"test_unadvertised_operations_are_refused_by_xapi"}


def test_conformance_suite_passes_on_s3(s3_env, tmp_path):
    dc = {"endpoint": s3_env["SRKIT_S3_ENDPOINT"], "bucket": s3_env["SRKIT_S3_BUCKET"],
          "access_key": s3_env["SRKIT_S3_ACCESS_KEY"],
          "secret_key": s3_env["SRKIT_S3_SECRET_KEY"],
          "prefix": "conformance-%s" % os.urandom(4).hex(), "cache_dir": "@tmpdir",
          "chunk_size": "1048576"}
    outcome.run("S3SR", dc, tmp_path, hosts=2, timeout=1800).assert_green(EXPECTED_SKIPS)
