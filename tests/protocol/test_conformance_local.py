"""The conformance suite (simulator/conformance) passes against sm_drivers/LocalSR."""
import subprocess
import sys

import pytest

from protocol_rig import LOCALSR, REPO
from simulator.conformance import outcome

# what LocalSR legitimately does not do (it advertises neither VDI_ACTIVATE nor
# VDI_DEACTIVATE, and advertises snapshot, clone and resize)
# no VDI_CONFIG_CBT (docs/cbt.md): the CBT checks other than the refusal skip
EXPECTED_SKIPS = {"test_activate_and_deactivate_twice",
                  "test_unadvertised_operations_are_refused_by_xapi",
                  "test_data_visible_from_every_host_of_a_shared_sr",
                  "test_changed_blocks_cover_every_write_over_generations",
                  "test_a_data_destroyed_snapshot_is_metadata_only_and_scan_keeps_it",
                  "test_unrelated_pairs_give_460_and_change_nothing"}


def test_conformance_suite_passes_on_local(tmp_path):
    outcome.run(LOCALSR, {"location": "@tmpdir"}, tmp_path).assert_green(EXPECTED_SKIPS)


def test_conformance_suite_detects_a_broken_driver(tmp_path):
    """A driver that writes junk before its reply must fail the suite."""
    broken = tmp_path / "BrokenSR"
    broken.write_text("#!/bin/sh\necho hello\nexec %s \"$@\"\n" % LOCALSR)
    broken.chmod(0o755)
    proc = subprocess.run(
        [sys.executable, "-m", "simulator.conformance.run", "--driver", str(broken),
         "--type", "broken", "--device-config", "location=@tmpdir", "--",
         "-q", "-x", "-k", "driver_info_process_discipline", "--basetemp",
         str(tmp_path / "base")],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "stdout is not one well-formed" in proc.stdout


def test_runner_refuses_a_missing_driver(tmp_path):
    from simulator.conformance import run
    with pytest.raises(SystemExit):
        run.build(["--driver", str(tmp_path / "NoSuchSR")])


def test_runner_arguments():
    from simulator.conformance import run
    config, args = run.build(["--driver", LOCALSR, "--device-config", "location=@tmpdir",
                              "--device-config", "x=a=b", "--hosts", "2", "--", "-k", "wire"])
    assert config["device_config"] == {"location": "@tmpdir", "x": "a=b"}
    assert config["hosts"] == 2 and config["type"] is None
    assert args[-2:] == ["-k", "wire"]
    assert "simulator.conformance.plugin" in args


def test_cli_wiring():
    from simulator import cli
    assert cli.SUBCOMMANDS["conformance"][0] == "simulator.conformance.run:main"
