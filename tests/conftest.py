"""Suite-wide: the long rows.

A row marked ``long`` repeats, on a slow backend, what a shorter test of the same
code already shows (the generic crash matrix on rbd and s3, which have crash tests of
their own; the backup flow and the two-host load on s3, where every driver call is
seconds): `./dev test` runs them with SRKIT_LONG=1, a default run (CI's) leaves them
out to stay within its time on a busy 2-core machine."""
import os

import pytest

LONG = os.environ.get("SRKIT_LONG") == "1"


def pytest_configure(config):
    config.addinivalue_line("markers", "long: a long row, run only with SRKIT_LONG=1")


def pytest_collection_modifyitems(config, items):
    if LONG:
        return
    skip = pytest.mark.skip(reason="a long row: SRKIT_LONG=1 runs it")
    for item in items:
        if item.get_closest_marker("long"):
            item.add_marker(skip)
