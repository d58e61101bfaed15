"""Callbacks into xapi through the session xapi handed to this invocation.

The only module that imports XenAPI, and only when a command needs a callback.
On a host it connects exactly as ``XenAPI.xapi_local()`` does (the local
socket /var/lib/xcp/xapi); SRKIT_XAPI_SOCKET points it elsewhere (the host
simulator). int64 values travel as decimal strings, as XenAPI requires.
"""

import os

from framework.errors import SRError

NULL_REF = 'OpaqueRef:NULL'


DEFAULT_SOCKET = '/var/lib/xcp/xapi'


def prefetch():
    """Start importing XenAPI in the background (it costs ~25 ms).

    Commands call back into xapi only after backend work that mostly waits on
    the network with the GIL released (librados, subprocesses); the import
    overlaps that wait instead of adding to it. The first real use simply
    joins the import through Python's import lock.
    """
    global _prefetching
    import threading

    def load():
        try:
            import XenAPI  # noqa: F401
        except Exception:  # reported properly by the first real call
            pass
    _prefetching = threading.Thread(target=load, name='xenapi-prefetch')
    _prefetching.daemon = True
    _prefetching.start()


_prefetching = None


def join_prefetch(timeout=10):
    """Wait for the background XenAPI import. A driver calls this before importing
    a library that resolves modules through six's meta-path importer (urllib3 1.26
    as Debian ships it, hence boto3): that importer deadlocks against a concurrent
    import of http.client in the prefetch thread."""
    if _prefetching is not None:
        _prefetching.join(timeout)


def _session(socket_path, session_ref, subtask_of):
    import socket
    import XenAPI

    class Connection(XenAPI.UDSHTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(socket_path)

    class Transport(XenAPI.UDSTransport):
        """xapi_local()'s transport, with an explicit socket and the task header."""

        def make_connection(self, host):
            XenAPI.UDSTransport.make_connection(self, host)  # resets the extra headers
            if subtask_of:
                # sm forwards the task so xapi attributes our calls to it
                self.add_extra_header('Subtask-of', subtask_of)
            if not isinstance(self._connection[1], Connection):
                self._connection = host, Connection(host)
            return self._connection[1]

    # the same URL as XenAPI.xapi_local(); the socket comes from Connection
    session = XenAPI.Session('http://_var_lib_xcp_xapi/', transport=Transport())
    session._session = session_ref
    return session


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
                self._api = _session(os.environ.get('SRKIT_XAPI_SOCKET') or DEFAULT_SOCKET,
                                     self.session_ref, self.subtask_of).xenapi
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
        from framework import meta as m
        return self._call(
            'VDI.db_introduce', uuid or volume.uuid, meta.get(m.NAME, ''),
            meta.get(m.DESCRIPTION, ''), self.sr_ref, meta.get(m.TYPE) or 'user',
            False, volume.read_only, {}, volume.uuid, {}, {}, True,
            str(volume.virtual_size), str(volume.physical_utilisation), NULL_REF,
            m.flag(meta, m.IS_SNAPSHOT), meta.get(m.SNAPSHOT_TIME) or m.EPOCH,
            snapshot_of_ref, False)

    def forget(self, ref):
        self._call('VDI.db_forget', ref)

    def set_vdi_sizes(self, ref, volume):
        self._call('VDI.set_virtual_size', ref, str(volume.virtual_size))
        self._call('VDI.set_physical_utilisation', ref, str(volume.physical_utilisation))

    def set_read_only(self, ref, read_only):
        self._call('VDI.set_read_only', ref, read_only)

    # --- SR --------------------------------------------------------------------------
    def set_sr_sizes(self, physical_size, physical_utilisation, virtual_allocation):
        self._call('SR.set_physical_size', self.sr_ref, str(physical_size))
        self._call('SR.set_physical_utilisation', self.sr_ref, str(physical_utilisation))
        self._call('SR.set_virtual_allocation', self.sr_ref, str(virtual_allocation))
