"""``VDI.get_nbd_info``: the simulated xapi's NBD exports.

A real host runs one NBD server (xapi-nbd, port 10809) that plugs a VDI into dom0
for each client and serves it read-only. Here each export is a ``qemu-nbd`` on
127.0.0.1 serving the device of the VDI's dom0 attach (the driver's vdi_attach +
vdi_activate, read-only, as ``srkit xe vdi-attach`` makes it), under xapi's export
name ``/<vdi uuid>?session_id=<session ref>`` (``Xapi_vdi._get_nbd_info``); plain
fixed-newstyle NBD, no TLS (``cert`` and ``subject`` are empty).

Lifetime (nothing is left behind): an export ends once the clients it was
granted for have come and gone, or when no client came within ``accept_window``
seconds of the last ``get_nbd_info``; ``close(vdi)`` (VDI.destroy,
VDI.data_destroy) and ``close_all()`` (the simulator stopping) end it at once.
Whichever comes first, the watcher thread of the export then detaches the VDI.
One export per VDI: a second ``get_nbd_info`` while it runs returns the same
record and grants it a new window. qemu-nbd runs ``--persistent`` and the
watcher alone decides the end, under the lock ``get_nbd_info`` takes: a qemu-nbd
that exited by itself when its client left could be handed to the next caller
in the moment before it was seen to be gone (the caller's connect was reset).

The listening socket is bound here (port 0 = any free port) and handed to
qemu-nbd by systemd-style socket activation, so there is no window in which the
port is free for someone else.
"""
import os
import shutil
import socket
import subprocess
import threading
import time

from simulator.errors import XapiError

ACCEPT_WINDOW = 60.0  # seconds a client has to connect after get_nbd_info
MAX_CLIENTS = 16      # parallel connections per export (XO opens several)
TCP_LISTEN = "0A"
TCP_OPEN = ("01", "03", "08")   # ESTABLISHED, SYN_RECV, CLOSE_WAIT (the server's side)


def connections(port):
    """The clients of 127.0.0.1:``port``, from /proc/net/tcp, each named by its own
    end: (those still connected, every one the table still shows). Both ends are on
    this host's loopback, so a client that came and went between two looks stays
    visible for a while (its TIME_WAIT, on either side), and one that has just
    connected counts before qemu-nbd accepts it."""
    connected, seen = set(), set()
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, state = fields[1], fields[2], fields[3]
                if int(local.split(":")[1], 16) == port and state != TCP_LISTEN:
                    seen.add(remote)
                    if state in TCP_OPEN:
                        connected.add(remote)
                elif int(remote.split(":")[1], 16) == port:
                    seen.add(local)
    except OSError:
        pass
    return connected, seen


class _Export(object):
    def __init__(self, vdi, info, proc, sock):
        self.vdi, self.info, self.proc, self.sock = vdi, info, proc, sock
        self.stop = threading.Event()
        self.thread = None
        self.ending = False    # set under the lock: get_nbd_info must not hand it out
        self.grant(set())

    def grant(self, known):
        """A get_nbd_info handed this export out: a new client has a fresh window;
        the clients already known (one on its way out) are not it."""
        self.granted = time.monotonic()
        self.baseline = set(known)
        self.seen = False


class NbdExports(object):
    """The NBD exports of one pool (one collaborator of :class:`simulator.pool.Pool`)."""

    def __init__(self, pool, accept_window=ACCEPT_WINDOW):
        self.pool = pool
        self.accept_window = accept_window
        self._exports = {}
        self._lock = threading.Lock()

    def get_nbd_info(self, vdi, session):
        """xapi's ``vdi_nbd_server_info`` records (one: this simulated host)."""
        rec = self.pool.vdi_record(vdi)
        if rec["type"] == "cbt_metadata":
            raise XapiError("VDI_INCOMPATIBLE_TYPE", [vdi, "cbt_metadata"])
        if not self.pool.db.find("PBD", SR=rec["SR"], host=self.pool.master,
                                 currently_attached=True):
            return []  # xapi lists only hosts where the SR is plugged
        while True:
            with self._lock:
                export = self._exports.get(vdi)
                if export is None:
                    export = self._start(vdi, rec, session)
                    self._exports[vdi] = export
                    return [dict(export.info)]
                if not export.ending:
                    export.grant(connections(int(export.info["port"]))[1])
                    return [dict(export.info)]
            # an export that is ending: let it unplug the VDI before plugging it again,
            # or its detach would undo the new attach
            export.thread.join()

    def _start(self, vdi, rec, session):
        qemu_nbd = shutil.which("qemu-nbd")
        if qemu_nbd is None:
            raise XapiError("INTERNAL_ERROR", ["qemu-nbd is not installed (apt qemu-utils)"])
        host = self.pool.master
        device = self.pool.vdi_attach(vdi, host=host, writable=False)["params"]
        sock = None
        try:
            if not device:
                raise XapiError("INTERNAL_ERROR", ["the driver's attach gave no dom0 device"])
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            sock.listen(MAX_CLIENTS)
            port = sock.getsockname()[1]
            exportname = "/%s?session_id=%s" % (rec["uuid"], session)
            # socket activation: the socket must be fd 3 and LISTEN_PID qemu-nbd's own
            # pid; bash moves the socket there (no preexec_fn: this process has
            # threads) and knows its pid ($$), which exec keeps
            env = dict(os.environ, LISTEN_FDS="1")
            cmd = ["/bin/bash", "-c", 'fd=$1; shift; [ "$fd" = 3 ] || exec 3<&$fd {fd}<&-; '
                   'LISTEN_PID=$$ exec "$@"', "srkit-nbd", str(sock.fileno()), qemu_nbd,
                   "--read-only", "--format=raw", "--shared=%d" % MAX_CLIENTS, "--persistent",
                   "--export-name=" + exportname, device]
            proc = subprocess.Popen(cmd, env=env, pass_fds=(sock.fileno(),),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE)
        except BaseException:
            if sock is not None:
                sock.close()
            self.pool.vdi_detach(vdi, host=host)
            raise
        info = {"address": "127.0.0.1", "port": str(port), "exportname": exportname,
                "cert": "", "subject": ""}
        export = _Export(vdi, info, proc, sock)
        export.thread = threading.Thread(target=self._watch, args=(export, host),
                                         name="srkit-nbd-" + rec["uuid"][:8], daemon=True)
        export.thread.start()
        self.pool.log("VDI.get_nbd_info %s: qemu-nbd pid %d on 127.0.0.1:%d serving %s"
                      % (vdi, proc.pid, port, device))
        return export

    def _watch(self, export, host):
        """Wait for the end of the export, then unplug the VDI."""
        port = int(export.info["port"])
        try:
            while not export.stop.wait(0.1) and export.proc.poll() is None:
                connected, seen = connections(port)
                with self._lock:
                    if seen - export.baseline:
                        export.seen = True
                    if connected:
                        continue
                    if export.seen:
                        export.ending = True   # its clients have come and gone
                        break
                    if time.monotonic() >= export.granted + self.accept_window:
                        export.ending = True
                        self.pool.log("NBD export of %s: no client within %.0fs"
                                      % (export.vdi, self.accept_window))
                        break
            with self._lock:
                export.ending = True
            if export.proc.poll() is None:
                export.proc.terminate()
            try:
                _, err = export.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                export.proc.kill()
                _, err = export.proc.communicate()
            if err:
                self.pool.log("qemu-nbd for %s: %s" % (export.vdi, err.decode(errors="replace")))
        finally:
            export.sock.close()
            try:
                self.pool.vdi_detach(export.vdi, host=host)
            except XapiError as e:
                self.pool.log("NBD export of %s: detach failed: %s" % (export.vdi, e))
            with self._lock:
                if self._exports.get(export.vdi) is export:
                    del self._exports[export.vdi]

    def wait_closed(self, vdi, timeout=None):
        """Wait until the export of ``vdi`` (if any) has ended and the VDI is unplugged."""
        with self._lock:
            export = self._exports.get(vdi)
        if export is not None:
            export.thread.join(timeout)

    def close(self, vdi):
        """Stop the export of ``vdi`` now (clients are cut off) and unplug the VDI."""
        with self._lock:
            export = self._exports.get(vdi)
        if export is not None:
            export.stop.set()
            export.thread.join()

    def close_all(self):
        with self._lock:
            vdis = list(self._exports)
        for vdi in vdis:
            self.close(vdi)

    def active(self):
        with self._lock:
            return {vdi: dict(e.info) for vdi, e in self._exports.items()}

