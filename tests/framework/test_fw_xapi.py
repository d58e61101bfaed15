"""framework.xapi's own XML-RPC client: the replies xapi (and xmlrpc.server) send."""
import os
import socket
import threading
import xmlrpc.client

import pytest

from framework import wire
from framework.xapi import Api, Connection, Failure


def _success(value):
    return xmlrpc.client.dumps(({"Status": "Success", "Value": value},),
                               methodresponse=True, allow_none=True).encode()


class _OneShotServer:
    """Answers each request on a UNIX socket with the next canned HTTP reply."""

    def __init__(self, path, replies):
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(4)
        self.replies = list(replies)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while self.replies:
            conn, _ = self.sock.accept()
            with conn:
                while self.replies:
                    data = b""
                    while b"\r\n\r\n" not in data:
                        more = conn.recv(65536)
                        if not more:
                            break
                        data += more
                    if not data:
                        break
                    head, _, body = data.partition(b"\r\n\r\n")
                    length = int([h for h in head.split(b"\r\n")
                                  if h.lower().startswith(b"content-length")][0].split(b":")[1])
                    while len(body) < length:
                        body += conn.recv(65536)
                    self.requests.append((head.decode(), body.decode()))
                    reply, close = self.replies.pop(0)
                    conn.sendall(reply)
                    if close:
                        break


def _http(body, chunked=False, close=False):
    head = "HTTP/1.1 200 OK\r\ncontent-type: text/xml\r\n"
    if close:
        head += "Connection: close\r\n"
    if chunked:
        half = len(body) // 2
        payload = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
        return (head + "Transfer-Encoding: chunked\r\n\r\n").encode() + payload + b"0\r\n\r\n"
    return (head + "Content-Length: %d\r\n\r\n" % len(body)).encode() + body


def test_calls_keep_alive_chunked_close_and_failures(tmp_path):
    path = str(tmp_path / "xapi")
    failure = xmlrpc.client.dumps(({"Status": "Failure", "ErrorDescription":
                                    ["HANDLE_INVALID", "VDI", "OpaqueRef:x"]},),
                                  methodresponse=True).encode()
    server = _OneShotServer(path, [
        (_http(_success("OpaqueRef:session")), False),
        (_http(_success({"uuid": "u", "virtual_size": "10", "sharable": False}),
               chunked=True), False),
        (_http(failure, close=True), True),
        (_http(_success(None)), False),
    ])
    api = Api(Connection(path, subtask_of="OpaqueRef:task"))
    assert api.session.login_with_password("root", "", "1.0", "srkit") == "OpaqueRef:session"
    assert api.VDI.get_record("OpaqueRef:v") == {"uuid": "u", "virtual_size": "10",
                                                  "sharable": False}
    with pytest.raises(Failure) as e:
        api.VDI.get_uuid("OpaqueRef:x")
    assert e.value.details == ["HANDLE_INVALID", "VDI", "OpaqueRef:x"]
    assert api.session.logout() is None     # on a new connection: the server closed the last
    server.thread.join(5)
    heads = [h for h, _ in server.requests]
    assert all(h.startswith("POST / HTTP/1.1\r\n") and "Subtask-of: OpaqueRef:task" in h
               for h in heads)
    calls = [xmlrpc.client.loads(b) for _, b in server.requests]
    assert calls == [(("root", "", "1.0", "srkit"), "session.login_with_password"),
                     (("OpaqueRef:session", "OpaqueRef:v"), "VDI.get_record"),
                     (("OpaqueRef:session", "OpaqueRef:x"), "VDI.get_uuid"),
                     (("OpaqueRef:session",), "session.logout")]


def test_decode_response_matches_xmlrpc_client():
    value = {"a": ["x", 1, True, {"b": ""}], "c": None}
    assert wire.decode_response(xmlrpc.client.dumps((value,), methodresponse=True,
                                                    allow_none=True).encode()) == value
    with pytest.raises(wire.Fault) as e:
        wire.decode_response(xmlrpc.client.dumps(xmlrpc.client.Fault(3, "no"),
                                                 methodresponse=True).encode())
    assert (e.value.code, e.value.text) == (3, "no")


def test_no_socket_is_an_oserror(tmp_path):
    with pytest.raises(OSError):
        Connection(os.path.join(str(tmp_path), "absent")).call("session.logout", "x")
