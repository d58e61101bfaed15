"""Named crash points: deterministic fault injection at the step boundaries of commands.

A mutating command is an ordered sequence of backend steps. Between two steps the
command (framework or driver) calls ``point('<name>')``. In production this is a
dictionary lookup and nothing else. A test makes the process die there, exactly as
a host crash or an OOM kill would, and then checks that the next command or
``sr_scan`` rolls the half-done work forward or back.

Names: ``<owner>.<command>.<step>``, lower case, e.g. ``rbd.clone.after-clone``,
``fw.vdi_create.before-introduce``. The owner is ``fw`` for the framework and the
SR type for a driver.

Environment (set only by tests; xapi never sets them):
- ``SRKIT_CRASH_AT=<name>``   SIGKILL this process when it reaches point ``name``
  (``<name>@<n>``: at its n-th passage, counting from 1).
- ``SRKIT_CRASH_TRACE=<file>`` append one line ``<name>`` per point passed, so a
  test can enumerate a command's points by running it once, without knowing any
  driver.
- ``SRKIT_GC_GRACE=<seconds>`` how old an orphan must be before scan collects it
  (default ``GRACE``). The guard against collecting what an in-flight command on
  another host is still building; a test that kills and scans at once sets 0.
"""

import os

_passed = {}

GRACE = 600.0


def point(name):
    """Mark a step boundary; a no-op unless a test armed this point."""
    at = os.environ.get('SRKIT_CRASH_AT')
    trace = os.environ.get('SRKIT_CRASH_TRACE')
    if not at and not trace:
        return
    count = _passed[name] = _passed.get(name, 0) + 1
    if trace:
        fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (name + '\n').encode('utf-8'))
        finally:
            os.close(fd)
    if at:
        want, _, nth = at.partition('@')
        if want == name and count == (int(nth) if nth else 1):
            import signal
            os.kill(os.getpid(), signal.SIGKILL)


def grace():
    """Seconds an orphan is left alone before garbage collection may remove it."""
    text = os.environ.get('SRKIT_GC_GRACE')
    try:
        return max(0.0, float(text)) if text else GRACE
    except ValueError:
        return GRACE
