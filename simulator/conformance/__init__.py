"""SMAPIv1 conformance suite: checks any SMAPIv1 driver through the host simulator.

Run it with ``srkit conformance --driver PATH --device-config k=v ...`` (see
``simulator.conformance.run``). The checks use only the simulator's Pool API
and raw request documents, never driver internals, so a third-party driver
is judged exactly like ours. What a driver does not advertise in
``sr_get_driver_info`` is skipped, never failed.

Test files are named ``check_*.py`` so that the repository's own test run does
not collect them without a driver to check; ``tests/protocol`` runs the suite
against ``sm_drivers/LocalSR``.
"""
