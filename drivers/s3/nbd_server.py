"""The NBD server of an attached S3 VDI: one process, one client, our own Python.

Run by datapath.py as ``python3 nbd_server.py <settings.json> <socket>``: it opens
the VDI (disk.Disk), listens on the unix socket, serves exactly one client (the
kernel's NBD client through ``nbd-client``, or ``nbdfuse``), and when that client
disconnects it flushes the last writes to S3 and exits. It writes its pid to
``<socket>.pid`` before listening and, at exit, the outcome of the final flush to
``<socket>.exit`` (``{"flushed": true}`` or the error), which detach reads.

Why our own server and not nbdkit: XCP-ng 8.3's dom0 (an EL7 userland) has nbdkit 1.8
with a Python 2 plugin only, and our plugin needs nbdkit >= 1.18's python3
``API_VERSION = 2`` (docs/s3.md). The subset of the protocol a Linux client uses
is small (doc/proto.md of the NBD project): the fixed newstyle handshake,
NBD_OPT_GO / INFO / EXPORT_NAME / LIST / ABORT, simple replies, and the commands
READ, WRITE (FUA), FLUSH, TRIM, WRITE_ZEROES, CACHE and DISC. Everything else an
option asks for is refused with NBD_REP_ERR_UNSUP, which every client handles.

Requests are served by a few worker threads (replies may go out of order, as the
protocol allows); the reader stops reading while MAX_INFLIGHT requests are being
served, so a fast writer cannot fill memory. A flush covers every write replied to
before it was received: a write changes the Disk before its reply is sent.
Python 3.6, standard library only (dom0).
"""

import errno
import json
import os
import socket
import struct
import sys
import threading

if __name__ == '__main__':
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.realpath(__file__)))))

NBDMAGIC = 0x4e42444d41474943
IHAVEOPT = 0x49484156454F5054
REPLY_MAGIC = 0x3e889045565a9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698

FLAG_FIXED_NEWSTYLE, FLAG_NO_ZEROES = 1, 2          # handshake flags (both directions)
OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_INFO, OPT_GO = 1, 2, 3, 6, 7
REP_ACK, REP_SERVER, REP_INFO = 1, 2, 3
REP_ERR_UNSUP, REP_ERR_INVALID = 2 ** 31 + 1, 2 ** 31 + 3
INFO_EXPORT = 0
HAS_FLAGS, READ_ONLY, SEND_FLUSH, SEND_FUA = 1, 2, 4, 8
SEND_TRIM, SEND_WRITE_ZEROES = 32, 64
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM, CMD_CACHE, CMD_WRITE_ZEROES = range(7)
CMD_FLAG_FUA = 1

MAX_REQUEST = 32 * 1024 * 1024   # the Linux client's largest request
MAX_INFLIGHT = 16                # requests being served at once (bounds memory)
WORKERS = 8
ACCEPT_TIMEOUT = 120.0           # no client by then: the attach that started us died

_REQUEST = struct.Struct('>IHHQQI')
_REPLY = struct.Struct('>IIQ')


class Disconnect(Exception):
    """The client went away (EOF) or asked to (NBD_CMD_DISC)."""


def _recv_exact(sock, n):
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if not k:
            raise Disconnect()
        got += k
    return buf


class Server(object):
    def __init__(self, disk, log):
        self.disk = disk
        self.log = log
        self.size = disk.size()
        self.writable = disk.writable
        self.send_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(MAX_INFLIGHT)

    # --- handshake ------------------------------------------------------------------
    def _opt_reply(self, sock, option, kind, data=b''):
        sock.sendall(struct.pack('>QIII', REPLY_MAGIC, option, kind, len(data)) + data)

    def _flags(self):
        flags = HAS_FLAGS | SEND_FLUSH | SEND_FUA
        if self.writable:
            flags |= SEND_TRIM | SEND_WRITE_ZEROES
        else:
            flags |= READ_ONLY
        return flags

    def handshake(self, sock):
        """Fixed newstyle negotiation; returns once the client entered transmission."""
        sock.sendall(struct.pack('>QQH', NBDMAGIC, IHAVEOPT, FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES))
        client_flags = struct.unpack('>I', _recv_exact(sock, 4))[0]
        no_zeroes = bool(client_flags & FLAG_NO_ZEROES)
        while True:
            magic, option, length = struct.unpack('>QII', _recv_exact(sock, 16))
            if magic != IHAVEOPT or length > 65536:
                raise Disconnect()
            data = bytes(_recv_exact(sock, length)) if length else b''
            if option == OPT_EXPORT_NAME:     # any name: the socket names the VDI
                sock.sendall(struct.pack('>QH', self.size, self._flags()) +
                             (b'' if no_zeroes else bytes(124)))
                return
            if option == OPT_ABORT:
                self._opt_reply(sock, option, REP_ACK)
                raise Disconnect()
            if option == OPT_LIST:
                self._opt_reply(sock, option, REP_SERVER, struct.pack('>I', 0))
                self._opt_reply(sock, option, REP_ACK)
            elif option in (OPT_INFO, OPT_GO):
                if length < 6 or struct.unpack('>I', data[:4])[0] + 6 > length:
                    self._opt_reply(sock, option, REP_ERR_INVALID)
                    continue
                self._opt_reply(sock, option, REP_INFO,
                                struct.pack('>HQH', INFO_EXPORT, self.size, self._flags()))
                self._opt_reply(sock, option, REP_ACK)
                if option == OPT_GO:
                    return
            else:                             # structured replies, TLS, meta contexts…
                self._opt_reply(sock, option, REP_ERR_UNSUP)

    # --- transmission -----------------------------------------------------------------
    def _reply(self, sock, handle, error, data=None):
        """A simple reply; a READ's data follows only on success (what clients read)."""
        with self.send_lock:
            try:
                sock.sendall(_REPLY.pack(SIMPLE_REPLY_MAGIC, error, handle))
                if data is not None and not error:
                    sock.sendall(data)
            except OSError:
                pass   # the client is gone: the reader sees EOF and ends the session

    def _serve(self, sock, kind, flags, handle, offset, length, payload):
        try:
            error, data = self._command(kind, flags, offset, length, payload)
        except Exception as e:   # noqa: BLE001 (the guest sees EIO; the log says why)
            self.log('request %d at %d+%d failed: %r' % (kind, offset, length, e))
            error, data = getattr(e, 'errno', None) or errno.EIO, None
            if error not in (errno.EIO, errno.ENOSPC, errno.EPERM, errno.EINVAL):
                error = errno.EIO
        finally:
            self.slots.release()
        self._reply(sock, handle, error, data)

    def _command(self, kind, flags, offset, length, payload):
        if kind == CMD_FLUSH:
            self.disk.flush()
            return 0, None
        if offset + length > self.size:
            return errno.EINVAL, None
        if kind == CMD_READ:
            buf = bytearray(length)
            self.disk.pread(buf, offset)
            return 0, buf
        if kind == CMD_CACHE:
            return 0, None
        if not self.writable:
            return errno.EPERM, None
        if kind == CMD_WRITE:
            self.disk.pwrite(payload, offset)
        elif kind == CMD_WRITE_ZEROES:
            self.disk.zero(offset, length)
        elif kind == CMD_TRIM:
            self.disk.zero(offset, length, partial=False)
        else:
            return errno.EINVAL, None
        if flags & CMD_FLAG_FUA:
            self.disk.flush()
        return 0, None

    def transmission(self, sock, pool):
        while True:
            magic, flags, kind, handle, offset, length = _REQUEST.unpack(
                _recv_exact(sock, _REQUEST.size))
            if magic != REQUEST_MAGIC:
                raise Disconnect()
            if kind == CMD_DISC:
                raise Disconnect()
            payload = None
            if kind == CMD_WRITE:
                if length > MAX_REQUEST:
                    raise Disconnect()   # cannot skip a payload we will not read
                payload = _recv_exact(sock, length)
            elif kind == CMD_READ and length > MAX_REQUEST:
                self._reply(sock, handle, errno.EINVAL)
                continue
            self.slots.acquire()
            pool.submit(self._serve, sock, kind, flags, handle, offset, length, payload)


def _listen(path):
    """Bind under a temporary name and rename once listening: the name appears only when
    a client can connect. Relative to the cwd (the state dir): sun_path is 108 bytes."""
    tmp = path + '.tmp'
    for p in (tmp, path):
        try:
            os.unlink(p)
        except OSError:
            pass
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(tmp)
    os.chmod(tmp, 0o600)
    listener.listen(1)
    os.rename(tmp, path)
    return listener


def _write_file(path, text):
    with open(path + '.tmp', 'w') as f:
        f.write(text)
    os.rename(path + '.tmp', path)


def serve(settings, path, log):
    """Open the VDI, serve one client on unix socket ``path``, flush, return the exit doc."""
    import concurrent.futures
    from drivers.s3.disk import Disk
    disk = Disk(settings, readonly=not settings.get('writable'))
    outcome = {'flushed': False}
    try:
        listener = _listen(path)
        listener.settimeout(ACCEPT_TIMEOUT)
        try:
            sock, _ = listener.accept()
        except socket.timeout:
            log('no client within %d s; exiting' % ACCEPT_TIMEOUT)
            return {'flushed': True, 'client': False}
        finally:
            listener.close()
            try:
                os.unlink(path)   # one client: nobody else may connect
            except OSError:
                pass
        sock.settimeout(None)
        server = Server(disk, log)
        pool = concurrent.futures.ThreadPoolExecutor(WORKERS)
        try:
            server.handshake(sock)
            log('client connected (%s)' % ('read-write' if disk.writable else 'read-only'))
            server.transmission(sock, pool)
        except (Disconnect, OSError) as e:
            log('client disconnected%s' % ('' if isinstance(e, Disconnect) else ': %r' % e))
        finally:
            pool.shutdown(wait=True)   # every request received is answered first
            sock.close()
    finally:
        try:
            disk.close()               # the final flush
            outcome['flushed'] = True
        except Exception as e:         # noqa: BLE001 (reported to detach)
            outcome['error'] = repr(e)
            log('final flush failed: %r' % e)
    return outcome


def main(argv):
    import time
    settings_path, path = argv[1], argv[2]

    def log(text):
        sys.stderr.write('%s nbd_server[%d] %s\n' % (time.strftime('%Y-%m-%d %H:%M:%S'),
                                                   os.getpid(), text))
        sys.stderr.flush()

    from drivers.s3.disk import load_settings
    settings = load_settings(settings_path)
    _write_file(path + '.pid', '%d\n' % os.getpid())
    try:
        outcome = serve(settings, path, log)
    except Exception as e:   # noqa: BLE001 (the VDI could not be opened)
        log('cannot serve %s: %r' % (settings.get('uuid'), e))
        outcome = {'flushed': False, 'error': repr(e)}
    _write_file(path + '.exit', json.dumps(outcome, sort_keys=True))
    return 0 if outcome.get('flushed') else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
