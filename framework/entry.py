"""The process xapi runs: one request in argv, one reply on stdout, exit status 0.

Whatever happens, stdout carries exactly one XML-RPC document: a reply or a
fault. While the command runs, fd 1 points at /dev/null so that nothing a
library or a child process prints can corrupt that document.

The one exception is a process killed inside a C library (librbd's abort,
a segfault in libzfs_core): no reply can be written then, and xapi reports
"received signal: N" with the driver's stderr. ``faulthandler`` (built in, no
import cost) puts every thread's Python stack there, so that report says which
call died.
"""

import os
import sys
import time

from framework.errors import SRError


def serve(target, argv):
    """Return the reply document for one invocation, logging one line; never raises."""
    from framework import wire
    from framework.log import Log, describe_exception, redacted
    log = Log()
    command = '?'
    shown = ''
    start = time.time()
    try:
        request = wire.decode_request(argv)
        command = request.command
        shown = redacted(request.params)
        from framework import registry
        driver_cls = registry.load(target)
        from framework import driver as contract
        from framework.commands import dispatch
        contract.check(driver_cls)
        reply = wire.encode_reply(dispatch(request, driver_cls, log))
        outcome = 'ok'
    except (SRError, ImportError) as e:
        if isinstance(e, ImportError):
            from framework import registry
            e = registry.missing_library(target, e)
        reply = wire.encode_fault(e.code, log.scrub(e.message))
        outcome = 'failed %d %s' % (e.code, e.message)
    except Exception as e:
        log.error('%s: EXCEPTION %s' % (command, describe_exception()))
        reply = wire.encode_fault(1200, log.scrub('%s: %s' % (type(e).__name__, e)))
        outcome = 'failed 1200 %s: %s' % (type(e).__name__, e)
    # one line per command: what was asked, how it ended, how long it took
    log.info('%s %s in %.1f ms %s' % (command, outcome, (time.time() - start) * 1000, shown))
    return reply


def run(target, argv=None):
    """Entry point of sm_drivers/<Name>SR: ``target`` is an SR type in
    framework.registry, or 'module.path:DriverClass' for drivers shipped elsewhere."""
    argv = sys.argv if argv is None else argv
    import faulthandler
    faulthandler.enable(all_threads=True)
    sys.stdout.flush()
    reply_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        reply = serve(target, argv)
    except BaseException as e:  # even a KeyboardInterrupt gets a well-formed fault
        from framework import wire
        reply = wire.encode_fault(1200, 'interrupted: %r' % (e,))
    data = reply.encode('utf-8')
    while data:
        data = data[os.write(reply_fd, data):]
    sys.stderr.flush()
    # skip interpreter teardown: a library thread left behind must not hang xapi
    os._exit(0)
