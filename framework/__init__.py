"""srkit framework: SMAPIv1 for XCP-ng storage drivers (runs on dom0's Python 3.6).

API_VERSION grows when the driver contract (framework.driver) gains something;
API_AGE says how many older versions still load unchanged. Bump both when adding
an optional primitive; bump only API_VERSION (and reset API_AGE to 0) when a
change breaks older drivers.
"""

API_VERSION = 1
API_AGE = 0

