"""``srkit serve``: the simulated pool as a long-running xapi that XenAPI clients
(backup tools, scripts using ``XenAPI.Session``) reach over HTTP on 127.0.0.1.

Every call runs the same pool flows as ``srkit xe``; NBD exports made by
``VDI.get_nbd_info`` are stopped, and their VDIs unplugged, when it exits
(SIGINT or SIGTERM).
"""
import argparse
import signal
import sys
import threading


def main(argv):
    p = argparse.ArgumentParser(prog="srkit serve", description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: the simulator has no "
                        "authentication)")
    p.add_argument("--nbd-accept-window", type=float, default=None, metavar="SECONDS",
                   help="how long an NBD export waits for its first client")
    args = p.parse_args(argv)
    from simulator.cli import pool_dir
    from simulator.pool import Pool
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    with Pool(pool_dir()) as pool:
        if args.nbd_accept_window is not None:
            pool.nbd.accept_window = args.nbd_accept_window
        port = pool.server.listen_tcp(args.port, args.address)
        pool.log("srkit serve: XenAPI on http://%s:%d/" % (args.address, port))
        sys.stdout.write("http://%s:%d/\n" % (args.address, port))
        sys.stdout.flush()
        try:
            while not done.wait(0.5):
                pass
        finally:
            pool.server.stop_tcp()
    return 0
