"""A minimal NBD client (fixed newstyle, read-only): what a backup tool does with
the record ``VDI.get_nbd_info`` returns. Used by the tests and benchmarks to read
a VDI the way Xen Orchestra does; both ways to pick an export are supported,
``NBD_OPT_GO`` (the default, what current clients send) and the older
``NBD_OPT_EXPORT_NAME``. Simple replies only (no structured replies, no TLS).

    with NbdClient(info["address"], int(info["port"]), info["exportname"]) as c:
        data = c.read(offset, length)
"""
import socket
import struct

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"
REPLY_MAGIC = 0x3e889045565a9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES = 1, 2
OPT_EXPORT_NAME, OPT_GO = 1, 7
REP_ACK, REP_INFO = 1, 3
INFO_EXPORT = 0
CMD_READ, CMD_DISC = 0, 2
FLAG_READ_ONLY = 2
MAX_READ = 4 * 1024 * 1024  # one request; bigger ones were slower against qemu-nbd here


class NbdError(Exception):
    pass


class NbdClient(object):
    """``size``, ``read_only`` (the transmission flag), ``read(offset, length)``."""

    def __init__(self, address, port, exportname, use_go=True, timeout=60):
        self.sock = socket.create_connection((address, int(port)), timeout=timeout)
        self._handle = 0
        try:
            self._handshake(exportname.encode(), use_go)
        except BaseException:
            self.sock.close()
            raise

    def _recv(self, n):
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = self.sock.recv_into(view[got:], n - got)
            if not k:
                raise NbdError("server closed the connection")
            got += k
        return bytes(buf)

    def _handshake(self, name, use_go):
        magic, opt, flags = struct.unpack(">8s8sH", self._recv(18))
        if magic != NBDMAGIC or opt != IHAVEOPT or not flags & FLAG_FIXED_NEWSTYLE:
            raise NbdError("not a fixed-newstyle NBD server")
        no_zeroes = flags & FLAG_NO_ZEROES
        self.sock.sendall(struct.pack(">I", FLAG_FIXED_NEWSTYLE | no_zeroes))
        if not use_go:
            self.sock.sendall(IHAVEOPT + struct.pack(">II", OPT_EXPORT_NAME, len(name)) + name)
            self.size, self.flags = struct.unpack(">QH", self._recv(10))
            if not no_zeroes:
                self._recv(124)
            return
        data = struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, INFO_EXPORT)
        self.sock.sendall(IHAVEOPT + struct.pack(">II", OPT_GO, len(data)) + data)
        self.size = None
        while True:
            magic, _, rtype, length = struct.unpack(">QIII", self._recv(20))
            payload = self._recv(length)
            if magic != REPLY_MAGIC:
                raise NbdError("bad option reply magic")
            if rtype & 0x80000000:
                raise NbdError("export %r refused (error %#x): %s"
                               % (name.decode(), rtype, payload.decode(errors="replace")))
            if rtype == REP_INFO and struct.unpack(">H", payload[:2])[0] == INFO_EXPORT:
                self.size, self.flags = struct.unpack(">QH", payload[2:12])
            elif rtype == REP_ACK:
                break
        if self.size is None:
            raise NbdError("no NBD_INFO_EXPORT before NBD_REP_ACK")

    @property
    def read_only(self):
        return bool(self.flags & FLAG_READ_ONLY)

    def read(self, offset, length):
        out = bytearray()
        while length > 0:
            n = min(length, MAX_READ)
            self._handle += 1
            self.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ,
                                          self._handle, offset, n))
            magic, error, handle = struct.unpack(">IIQ", self._recv(16))
            if magic != SIMPLE_REPLY_MAGIC or handle != self._handle:
                raise NbdError("bad reply")
            if error:
                raise NbdError("read of %d bytes at %d failed: errno %d" % (n, offset, error))
            out += self._recv(n)
            offset += n
            length -= n
        return bytes(out)

    def close(self):
        try:
            self.sock.sendall(struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_DISC, 0, 0, 0))
        except OSError:
            pass
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
