"""Connecting to Ceph with bounded time, and mapping Ceph errors to SR faults.

xapi never times out a driver, so every path that talks to the cluster has a
deadline: the monitor handshake (``client_mount_timeout`` and ``connect``'s
timeout), every monitor command (``rados_mon_op_timeout``) and every OSD op
(``rados_osd_op_timeout``). An unreachable cluster becomes SRUnavailable (47)
in ``connect_timeout`` seconds.

``rados``/``rbd`` are imported here, lazily: ``sr_get_driver_info`` never loads them.
"""

import errno
import os
import re

from framework.errors import SRError
from framework.options import config_error

CONNECT_TIMEOUT = 10     # seconds for the monitor handshake
MON_OP_TIMEOUT = 15      # seconds per monitor command
OSD_OP_TIMEOUT = 60      # seconds per OSD operation (a stuck PG must not hang xapi)

_KEY_RE = re.compile(r'^[A-Za-z0-9+/]{20,}={0,2}$')
_NAME_RE = re.compile(r'^[A-Za-z0-9_.\-]+$')


def validate_config(config):
    """Problems a look at device-config finds (before any network traffic): 115."""
    bad = []
    conf = config.get('conf')
    if conf and not os.path.isfile(conf):
        bad.append('conf=%s (no such file)' % conf)
    keyring = config.get('keyring')
    if keyring and not os.path.isfile(keyring):
        bad.append('keyring=%s (no such file)' % keyring)
    key = config.get('key')
    if key and not _KEY_RE.match(key):
        bad.append('key (not a base64 cephx key)')
    for name in ('pool', 'data_pool', 'namespace', 'user'):
        value = config.get(name)
        if value and not _NAME_RE.match(value):
            bad.append('%s=%s (invalid name)' % (name, value))
    missing = []
    if not (conf or config.get('monitors')):
        missing.append('monitors (or conf)')
    if not (key or keyring or conf):
        missing.append('key (or key_secret, keyring or conf)')
    config_error(missing, bad)


def rados_conf(config, extra=None):
    """The librados settings of a connection (a dict of strings)."""
    timeout = int(config.get('connect_timeout') or CONNECT_TIMEOUT)
    conf = {
        'client_mount_timeout': str(timeout),
        'rados_mon_op_timeout': str(MON_OP_TIMEOUT),
        'rados_osd_op_timeout': str(OSD_OP_TIMEOUT),
        # short-lived clients: no admin socket, no log file, nothing on stderr
        'admin_socket': '',
        'log_file': '',
        'log_to_stderr': 'false',
        'err_to_stderr': 'false',
        'log_to_syslog': 'false',
        # breaking our own stale advisory locks must not blocklist anybody;
        # the fencing action blocklists explicitly
        'rbd_blocklist_on_break_lock': 'false',
        # a fresh image is opened per driver call: nothing to gain from the cache
        'rbd_cache': 'false',
    }
    if config.get('monitors'):
        conf['mon_host'] = config['monitors']
    if config.get('key'):
        conf['key'] = config['key']
    elif config.get('keyring'):
        conf['keyring'] = config['keyring']
    conf.update(extra or {})
    return conf


class Cluster(object):
    """One connection (per driver process) plus the SR's I/O context."""

    def __init__(self, config, extra=None):
        self.config = config
        self.extra = extra
        self._rados = None
        self._ioctx = {}

    @property
    def user(self):
        return self.config.get('user') or 'admin'

    @property
    def rados(self):
        if self._rados is None:
            self._rados = self._connect()
        return self._rados

    def _connect(self):
        import rados
        timeout = int(self.config.get('connect_timeout') or CONNECT_TIMEOUT)
        what = 'Ceph cluster at %s as client.%s' % (
            self.config.get('monitors') or self.config.get('conf'), self.user)
        try:
            cluster = rados.Rados(rados_id=self.user, conffile=self.config.get('conf') or None,
                                  conf=rados_conf(self.config, self.extra))
        except rados.Error as e:
            raise SRError('ConfigParamsMissing', 'device-config has invalid values: '
                          'conf/monitors (%s)' % e)
        try:
            cluster.connect(timeout=timeout)
        except rados.Error as e:
            code = getattr(e, 'errno', None)
            if code in (errno.EACCES, errno.EPERM):
                raise SRError('ConfigParamsMissing', 'device-config has invalid values: '
                              'user/key: cephx authentication as client.%s was refused by %s'
                              % (self.user, self.config.get('monitors') or 'the monitors'))
            if code == errno.EINVAL:
                raise SRError('ConfigParamsMissing', 'device-config has invalid values: '
                              'key/keyring/monitors rejected by librados (%s)' % e)
            raise SRError('SRUnavailable', 'cannot reach the %s within %d s: %s'
                          % (what, timeout, e))
        return cluster

    def ioctx(self, pool, namespace=''):
        key = (pool, namespace)
        if key not in self._ioctx:
            import rados
            try:
                io = self.rados.open_ioctx(pool)
            except rados.ObjectNotFound:
                raise SRError('ConfigParamsMissing', 'device-config has invalid values: '
                              'pool=%s (no such pool in the cluster)' % pool)
            except rados.Error as e:
                raise ceph_error(e, 'opening pool %s' % pool)
            io.set_namespace(namespace)
            self._ioctx[key] = io
        return self._ioctx[key]

    def close(self):
        for io in self._ioctx.values():
            try:
                io.close()
            except Exception:
                pass
        self._ioctx = {}
        if self._rados is not None:
            try:
                self._rados.shutdown()
            except Exception:
                pass
            self._rados = None


def ceph_error(e, doing, name='SMGeneral'):
    """An SRError for a rados/rbd exception ``e`` raised while ``doing``."""
    code = getattr(e, 'errno', None)
    text = '%s: %s' % (doing, e)
    if code in (errno.ETIMEDOUT, errno.ESHUTDOWN, errno.ECONNREFUSED, 108):
        return SRError('SRUnavailable', text)
    if code == errno.ENOSPC or code == errno.EDQUOT:
        return SRError('SRNoSpace', text)
    if code in (errno.EACCES, errno.EPERM):
        return SRError('SRUnavailable', text + ' (check the caps of the cephx user)')
    return SRError(name, text)
