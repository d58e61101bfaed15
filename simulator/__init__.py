"""srkit host simulator: a loopback stand-in for xapi 26.1.4 that runs SMAPIv1
drivers exactly as xapi does and serves their XenAPI callbacks from SQLite.

Entry point for tests, the conformance suite, the demo and benchmarks::

    from simulator import Pool, XapiError
"""
from simulator.errors import XapiError


def __getattr__(name):  # lazy, so `import simulator` stays cheap
    if name == "Pool":
        from simulator.pool import Pool
        return Pool
    raise AttributeError(name)


__all__ = ["Pool", "XapiError"]
