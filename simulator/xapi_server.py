"""XenAPI XML-RPC over HTTP on a UNIX socket, like xapi's ``/var/lib/xcp/xapi``,
and, on request (``listen_tcp``, ``srkit serve``), over HTTP on 127.0.0.1 for
XenAPI clients such as backup tools.

Runs in background threads of the calling process while drivers run.
Every reply is xapi's envelope: ``{'Status': 'Success', 'Value': v}`` or
``{'Status': 'Failure', 'ErrorDescription': [code, params...]}``.
"""
import http.server
import os
import socketserver
import sys
import tempfile
import threading
import traceback
import xmlrpc.client

from simulator.errors import XapiError
from simulator.xapi_api import XapiApi

MAX_SOCKET_PATH = 100  # sun_path is 108 bytes


def _envelope(api, method, params):
    """xapi's reply envelope around one :class:`XapiApi` call."""
    try:
        return {"Status": "Success", "Value": api.call(method, params)}
    except XapiError as e:
        return {"Status": "Failure", "ErrorDescription": e.description}
    except Exception as e:  # a simulator bug must not look like a driver bug
        api.log("INTERNAL_ERROR in %s: %s" % (method, traceback.format_exc()))
        return {"Status": "Failure", "ErrorDescription": ["INTERNAL_ERROR", str(e)]}


class _Handler(http.server.BaseHTTPRequestHandler):
    """XML-RPC over HTTP/1.1 on any path, as xapi accepts it. Not xmlrpc.server's
    handler: importing that module (pydoc, inspect) costs every `srkit xe` command
    more than the rest of the server, and xapi's envelope replaces its dispatch."""
    protocol_version = "HTTP/1.1"  # keep-alive, as XenAPI.py's transport expects
    disable_nagle_algorithm = False  # TCP_NODELAY makes no sense on a UNIX socket

    def do_POST(self):
        try:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            params, method = xmlrpc.client.loads(body, use_builtin_types=False)
            reply = xmlrpc.client.dumps((_envelope(self.server.api, method, params),),
                                        methodresponse=True, allow_none=True)
        except Exception as e:  # not an XML-RPC call: a fault, as xmlrpc.server gives
            reply = xmlrpc.client.dumps(xmlrpc.client.Fault(1, "%s:%s" % (type(e), e)),
                                        allow_none=True)
        data = reply.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):   # the pool's log has the calls; stderr is the CLI's
        pass


class _Quiet:
    """A driver killed mid-call (crash tests) or a client gone hangs up before its
    reply: not an error."""

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        socketserver.BaseServer.handle_error(self, request, client_address)


class _UnixXMLRPCServer(_Quiet, socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, path, api):
        self.api = api
        socketserver.UnixStreamServer.__init__(self, path, _Handler)


class _TcpXMLRPCServer(_Quiet, socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address, api):
        self.api = api
        socketserver.TCPServer.__init__(self, address, _Handler)


def socket_path_for(pool_dir):
    """A fresh socket path for one server of this pool: inside the pool dir when
    that is short enough, else in a short private temp dir."""
    name = "xapi-%d-%s.sock" % (os.getpid(), os.urandom(3).hex())
    candidate = os.path.join(os.path.abspath(pool_dir), "run", name)
    if len(candidate) < MAX_SOCKET_PATH:
        os.makedirs(os.path.dirname(candidate), exist_ok=True)
        return candidate
    return os.path.join(tempfile.mkdtemp(prefix="srkit-", dir="/tmp"), name)


class XapiServer:
    """Reference-counted background server: ``with server.running(): ...``.
    Nested or concurrent users share one socket."""

    def __init__(self, db, pool_dir, log=None, client=None):
        self.api = XapiApi(db, log, client)
        self._tcp = None
        self.pool_dir = pool_dir
        self.path = None
        self._server = None
        self._users = 0
        self._lock = threading.Lock()

    def start(self):
        with self._lock:
            self._users += 1
            if self._server is None:
                self.path = socket_path_for(self.pool_dir)
                self._server = _UnixXMLRPCServer(self.path, self.api)
                # stop() waits for the loop to see the request: up to one interval at
                # the end of every `srkit xe` command that called a driver
                threading.Thread(target=self._server.serve_forever, args=(0.01,),
                                 name="srkit-xapi", daemon=True).start()
        return self.path

    def stop(self):
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._server is None:
                return
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()
            try:
                os.unlink(self.path)
                if os.path.basename(os.path.dirname(self.path)).startswith("srkit-"):
                    os.rmdir(os.path.dirname(self.path))
            except OSError:
                pass

    def listen_tcp(self, port=0, address="127.0.0.1"):
        """Also serve XenAPI clients over HTTP at ``address:port`` (0: any free port)
        until :meth:`stop_tcp`; returns the port. Drivers still call back on the UNIX
        socket, which stays up meanwhile."""
        self.start()
        self._tcp = _TcpXMLRPCServer((address, port), self.api)
        threading.Thread(target=self._tcp.serve_forever, args=(0.2,),
                         name="srkit-xapi-http", daemon=True).start()
        return self._tcp.server_address[1]

    def stop_tcp(self):
        if self._tcp is not None:
            tcp, self._tcp = self._tcp, None
            tcp.shutdown()
            tcp.server_close()
            self.stop()

    def running(self):
        server = self

        class _Ctx:
            def __enter__(self):
                return server.start()

            def __exit__(self, *exc):
                server.stop()
        return _Ctx()
