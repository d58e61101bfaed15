"""drivers/s3/nbd_server.py speaks the NBD protocol as a Linux client and nbdfuse expect:
a client written from the protocol's text drives it over a socketpair, in front of an
in-memory disk (the S3 disk behind it is tested through real devices elsewhere)."""
import errno
import socket
import struct
import threading

import pytest

from drivers.s3 import nbd_server as S


class MemoryDisk(object):
    def __init__(self, size, writable=True):
        self.data = bytearray(size)
        self.writable = writable
        self.flushes = 0
        self.zeroed = []

    def size(self):
        return len(self.data)

    def pread(self, buf, offset):
        buf[:] = self.data[offset:offset + len(buf)]

    def pwrite(self, buf, offset):
        self.data[offset:offset + len(buf)] = buf

    def zero(self, offset, length, partial=True):
        self.zeroed.append((offset, length, partial))
        self.data[offset:offset + length] = bytes(length)

    def flush(self):
        self.flushes += 1


def recv(sock, n):
    return bytes(S._recv_exact(sock, n))


class Client(object):
    def __init__(self, sock):
        self.sock = sock
        magic, opt, flags = struct.unpack(">QQH", recv(sock, 18))
        assert (magic, opt) == (S.NBDMAGIC, S.IHAVEOPT)
        assert flags & S.FLAG_FIXED_NEWSTYLE and flags & S.FLAG_NO_ZEROES
        sock.sendall(struct.pack(">I", S.FLAG_FIXED_NEWSTYLE | S.FLAG_NO_ZEROES))
        self.handle = 0

    def option(self, opt, data=b""):
        self.sock.sendall(struct.pack(">QII", S.IHAVEOPT, opt, len(data)) + data)

    def reply(self):
        magic, opt, kind, length = struct.unpack(">QIII", recv(self.sock, 20))
        assert magic == S.REPLY_MAGIC
        return opt, kind, recv(self.sock, length)

    def go(self):
        self.option(S.OPT_GO, struct.pack(">I", 4) + b"disk" + struct.pack(">H", 0))
        _, kind, data = self.reply()
        assert kind == S.REP_INFO
        info, size, flags = struct.unpack(">HQH", data)
        assert info == S.INFO_EXPORT
        assert self.reply()[1] == S.REP_ACK
        return size, flags

    def request(self, kind, offset=0, length=0, payload=b"", flags=0):
        self.handle += 1
        self.sock.sendall(struct.pack(">IHHQQI", S.REQUEST_MAGIC, flags, kind, self.handle,
                                      offset, length) + payload)
        magic, error, handle = struct.unpack(">IIQ", recv(self.sock, 16))
        assert (magic, handle) == (S.SIMPLE_REPLY_MAGIC, self.handle)
        data = recv(self.sock, length) if kind == S.CMD_READ and not error else b""
        return error, data


@pytest.fixture
def served():
    """(client, disk, server thread) for a disk; the thread ends when the client leaves."""
    started = []

    def start(disk):
        ours, theirs = socket.socketpair()
        server = S.Server(disk, lambda text: None)

        def run():
            import concurrent.futures
            pool = concurrent.futures.ThreadPoolExecutor(4)
            try:
                server.handshake(theirs)
                server.transmission(theirs, pool)
            except S.Disconnect:
                pass
            finally:
                pool.shutdown(wait=True)
                theirs.close()
        t = threading.Thread(target=run)
        t.start()
        started.append((ours, t))
        return Client(ours)
    yield start
    for sock, t in started:
        sock.close()
        t.join(10)
        assert not t.is_alive()


def test_options_then_go_then_io(served):
    disk = MemoryDisk(1 << 20)
    c = served(disk)
    c.option(S.OPT_LIST)
    assert c.reply()[1] == S.REP_SERVER and c.reply()[1] == S.REP_ACK
    c.option(8)                                          # structured replies: refused
    assert c.reply()[1] == S.REP_ERR_UNSUP
    size, flags = c.go()
    assert size == 1 << 20
    assert flags & S.SEND_FLUSH and flags & S.SEND_FUA and flags & S.SEND_TRIM
    assert not flags & S.READ_ONLY
    assert c.request(S.CMD_WRITE, 4096, 5, b"hello") == (0, b"")
    assert c.request(S.CMD_READ, 4094, 9) == (0, b"\0\0hello\0\0")
    assert disk.flushes == 0
    assert c.request(S.CMD_WRITE, 0, 3, b"fua", flags=S.CMD_FLAG_FUA) == (0, b"")
    assert disk.flushes == 1
    assert c.request(S.CMD_FLUSH) == (0, b"")
    assert disk.flushes == 2
    assert c.request(S.CMD_TRIM, 0, 8192) == (0, b"")
    assert c.request(S.CMD_WRITE_ZEROES, 100, 10) == (0, b"")
    assert disk.zeroed == [(0, 8192, False), (100, 10, True)]
    assert c.request(S.CMD_READ, (1 << 20) - 4, 8)[0] == errno.EINVAL   # past the end
    c.sock.sendall(struct.pack(">IHHQQI", S.REQUEST_MAGIC, 0, S.CMD_DISC, 99, 0, 0))
    assert c.sock.recv(1) == b""                         # DISC: no reply, the server hangs up


def test_export_name_without_zeroes_and_read_only(served):
    disk = MemoryDisk(65536, writable=False)
    disk.data[:4] = b"data"
    c = served(disk)
    c.option(S.OPT_EXPORT_NAME, b"anything")
    size, flags = struct.unpack(">QH", recv(c.sock, 10))   # no 124 zero bytes
    assert size == 65536 and flags & S.READ_ONLY and not flags & S.SEND_TRIM
    assert c.request(S.CMD_READ, 0, 4) == (0, b"data")
    assert c.request(S.CMD_WRITE, 0, 4, b"nope")[0] == errno.EPERM
    assert disk.data[:4] == b"data"


def test_a_failing_disk_gives_eio_and_the_session_goes_on(served):
    class Broken(MemoryDisk):
        def flush(self):
            raise RuntimeError("S3 is down")
    c = served(Broken(4096))
    c.go()
    assert c.request(S.CMD_FLUSH)[0] == errno.EIO
    assert c.request(S.CMD_WRITE, 0, 2, b"ok") == (0, b"")


def test_many_requests_in_flight_are_all_answered(served):
    disk = MemoryDisk(1 << 20)
    c = served(disk)
    c.go()
    n = 64
    for i in range(n):          # pipelined: send all, then read every reply
        c.sock.sendall(struct.pack(">IHHQQI", S.REQUEST_MAGIC, 0, S.CMD_WRITE, 1000 + i,
                                   i * 4096, 4096) + bytes([i]) * 4096)
    handles = set()
    for _ in range(n):
        magic, error, handle = struct.unpack(">IIQ", recv(c.sock, 16))
        assert (magic, error) == (S.SIMPLE_REPLY_MAGIC, 0)
        handles.add(handle)
    assert handles == set(range(1000, 1000 + n))
    assert all(disk.data[i * 4096] == i for i in range(n))
