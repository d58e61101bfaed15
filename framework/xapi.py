"""Callbacks into xapi through the session xapi handed to this invocation.

XenAPI's own client (XenAPI.py on xmlrpc.client, http.client and email) costs
~30 ms to import: as much as the rest of a ``vdi_create``. A callback is one
XML-RPC POST on a local UNIX socket, so this module speaks it itself with
``framework.wire``'s encoder and decoder over a raw socket, the way
``XenAPI.xapi_local()`` connects (/var/lib/xcp/xapi; SRKIT_XAPI_SOCKET points it
elsewhere, e.g. the host simulator): HTTP/1.1 keep-alive, one connection per
process. int64 values travel as decimal strings, as XenAPI requires.
"""

import os

from framework.errors import SRError

NULL_REF = 'OpaqueRef:NULL'


DEFAULT_SOCKET = '/var/lib/xcp/xapi'


class Failure(Exception):
    """A XenAPI failure: ``details`` is xapi's ErrorDescription list."""

    def __init__(self, details):
        Exception.__init__(self, details)
        self.details = details

    def __str__(self):
        return str(self.details)


class Connection(object):
    """XML-RPC calls on xapi's UNIX socket (``call('VDI.get_uuid', session, ref)``)."""

    def __init__(self, socket_path, subtask_of=''):
        self.path = socket_path
        self.headers = 'Subtask-of: %s\r\n' % subtask_of if subtask_of else ''
        self.sock = None
        self.buf = b''

    def call(self, method, *params):
        from framework import wire
        body = wire.encode_call(method, params).encode('utf-8')
        request = ('POST / HTTP/1.1\r\nHost: _var_lib_xcp_xapi\r\nContent-Type: text/xml\r\n'
                   'User-Agent: srkit\r\n%sContent-Length: %d\r\n\r\n'
                   % (self.headers, len(body))).encode('ascii') + body
        for attempt in (1, 2):
            reused = self.sock is not None
            try:
                if not reused:
                    self._connect()
                self.sock.sendall(request)
                reply = self._response()
                break
            except (OSError, EOFError):
                self.close()
                # an idle keep-alive connection the server closed: once more on a new
                # one, as xmlrpc.client's transport does
                if not reused or attempt == 2:
                    raise
        try:
            result = wire.decode_response(reply)
        except wire.Fault as e:
            raise Failure(['XMLRPC_FAULT', str(e.code), str(e.text)])
        if not isinstance(result, dict) or result.get('Status') not in ('Success', 'Failure'):
            raise Failure(['XMLRPC_BAD_REPLY', repr(result)[:200]])
        if result['Status'] == 'Failure':
            raise Failure(result.get('ErrorDescription') or [])
        return result.get('Value')

    def _connect(self):
        # _socket, not socket: the socket module's enums cost a few ms per process
        import _socket
        self.sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self.sock.connect(self.path)
        self.buf = b''

    def _recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError('xapi closed the connection')
        self.buf += data

    def _line(self):
        while b'\r\n' not in self.buf:
            self._recv()
        line, self.buf = self.buf.split(b'\r\n', 1)
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._recv()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _response(self):
        status = self._line().split(None, 2)
        headers = {}
        while True:
            line = self._line()
            if not line:
                break
            key, _, value = line.partition(b':')
            headers[key.strip().lower()] = value.strip().lower()
        if len(status) < 2 or status[1] != b'200':
            raise Failure(['HTTP_ERROR', b' '.join(status).decode('latin-1')])
        if headers.get(b'transfer-encoding') == b'chunked':
            parts = []
            while True:
                size = int(self._line().split(b';')[0], 16)
                if not size:
                    while self._line():   # trailers
                        pass
                    break
                parts.append(self._take(size))
                self._take(2)
            body = b''.join(parts)
        elif b'content-length' in headers:
            body = self._take(int(headers[b'content-length']))
        else:   # the body runs to the end of the connection
            try:
                while True:
                    self._recv()
            except EOFError:
                pass
            body, self.buf = self.buf, b''
            headers[b'connection'] = b'close'
        if headers.get(b'connection') == b'close' or status[0] == b'HTTP/1.0':
            self.close()
        return body

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None


class Api(object):
    """``api.VDI.get_record(ref)``: XenAPI's call style on a ``Connection``, with
    the session put first (``session.login_with_password`` sets it)."""

    def __init__(self, connection, session_ref=None, _name=''):
        self._connection = connection
        self._ref = [session_ref]
        self._name = _name

    def __getattr__(self, part):
        if part.startswith('_'):
            raise AttributeError(part)
        child = Api(self._connection, None, '%s.%s' % (self._name, part) if self._name
                    else part)
        child._ref = self._ref
        return child

    @property
    def session_ref(self):
        return self._ref[0]

    def __call__(self, *args):
        if self._name in ('session.login_with_password',
                          'session.slave_local_login_with_password'):
            self._ref[0] = self._connection.call(self._name, *args)
            return self._ref[0]
        return self._connection.call(self._name, self._ref[0], *args)


def local_api(session_ref=None, subtask_of=''):
    """An ``Api`` on this host's xapi socket."""
    return Api(Connection(os.environ.get('SRKIT_XAPI_SOCKET') or DEFAULT_SOCKET, subtask_of),
               session_ref)


class Xapi(object):
    """The calls the command layer makes; each failure becomes APIFailure (153)."""

    def __init__(self, session_ref, sr_ref='', subtask_of=''):
        self.session_ref = session_ref
        self.sr_ref = sr_ref
        self.subtask_of = subtask_of
        self._api = None

    @property
    def available(self):
        return bool(self.session_ref)

    def _call(self, name, *args):
        if not self.session_ref:
            raise SRError('APISession', 'no xapi session for %s' % name)
        try:
            if self._api is None:
                self._api = local_api(self.session_ref, self.subtask_of)
            method = self._api
            for part in name.split('.'):
                method = getattr(method, part)
            return method(*args)
        except SRError:
            raise
        except Exception as e:
            details = getattr(e, 'details', None)
            raise SRError('APIFailure', '%s: %s' % (name, details or e))

    # --- records -------------------------------------------------------------
    def vdi_records(self):
        """{ref: record} of every VDI xapi has in this SR, in one call."""
        return self._call('VDI.get_all_records_where', 'field "SR" = "%s"' % self.sr_ref)

    def vdi_record(self, ref):
        return self._call('VDI.get_record', ref)

    def vdi_uuid(self, ref):
        return self._call('VDI.get_uuid', ref)

    def vdi_uuid_if_known(self, ref):
        """The uuid of a VDI, or None when xapi no longer has it: a snapshot keeps its
        destroyed parent's ref in snapshot_of (xe shows '<not in database>')."""
        try:
            return self._call('VDI.get_uuid', ref)
        except SRError as e:
            if 'HANDLE_INVALID' in e.detail:
                return None
            raise

    def vdi_ref(self, uuid):
        return self._call('VDI.get_by_uuid', uuid)

    def host_uuid(self, host_ref):
        return self._call('host.get_uuid', host_ref)

    def secret(self, secret_uuid):
        return self._call('secret.get_value', self._call('secret.get_by_uuid', secret_uuid))

    # --- VDI rows ----------------------------------------------------------------
    def introduce(self, volume, meta, snapshot_of_ref=NULL_REF, uuid=None):
        """VDI.db_introduce, with the positional signature sm uses.

        The location is the volume's backend name; the xapi uuid is the same
        unless vdi_introduce imposes another.
        """
        from framework import cbt
        from framework import meta as m
        return self._call(
            'VDI.db_introduce', uuid or volume.uuid, meta.get(m.NAME, ''),
            meta.get(m.DESCRIPTION, ''), self.sr_ref, cbt.vdi_type(meta),
            False, volume.read_only, {}, volume.uuid, {}, {}, True,
            str(volume.virtual_size), str(volume.physical_utilisation), NULL_REF,
            m.flag(meta, m.IS_SNAPSHOT), meta.get(m.SNAPSHOT_TIME) or m.EPOCH,
            snapshot_of_ref, cbt.enabled(meta))

    def forget(self, ref):
        self._call('VDI.db_forget', ref)

    def set_vdi_sizes(self, ref, volume):
        self._call('VDI.set_virtual_size', ref, str(volume.virtual_size))
        self._call('VDI.set_physical_utilisation', ref, str(volume.physical_utilisation))

    def set_read_only(self, ref, read_only):
        self._call('VDI.set_read_only', ref, read_only)

    def set_cbt_enabled(self, ref, value):
        self._call('VDI.set_cbt_enabled', ref, value)

    # --- SR --------------------------------------------------------------------------
    def set_sr_sizes(self, physical_size, physical_utilisation, virtual_allocation):
        self._call('SR.set_physical_size', self.sr_ref, str(physical_size))
        self._call('SR.set_physical_utilisation', self.sr_ref, str(physical_utilisation))
        self._call('SR.set_virtual_allocation', self.sr_ref, str(virtual_allocation))
