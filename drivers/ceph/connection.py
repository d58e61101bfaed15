"""Connecting to Ceph with bounded time, and mapping Ceph errors to SR faults.

xapi never times out a driver, so every path that talks to the cluster has a
deadline: the monitor handshake (``client_mount_timeout`` and ``connect``'s
timeout), every monitor command (``rados_mon_op_timeout``) and every OSD op
(``rados_osd_op_timeout``). An unreachable cluster becomes SRUnavailable (47)
in ``connect_timeout`` seconds, a stalled OSD in ``op_timeout`` seconds.

librados prints some errors to fd 2 before its own logging settings apply
(``failed to decode key '<the key>'``); xapi copies a driver's stderr into its
log. So the first connection points fd 2 at a private temporary file, and
``drain_stderr`` (after every primitive) copies it to the real stderr with
every secret scrubbed.

``rados``/``rbd`` are imported here, lazily: ``sr_get_driver_info`` never loads them.
"""

import errno
import os
import re

from framework.errors import SRError, primitive_faults
from framework.options import config_error

CONNECT_TIMEOUT = 10     # seconds for the monitor handshake
OP_TIMEOUT = 20          # seconds per OSD op / monitor command: a stalled OSD faults
                         # (47) well within 30 s instead of hanging xapi

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
    op_timeout = int(config.get('op_timeout') or OP_TIMEOUT)
    conf = {
        'client_mount_timeout': str(timeout),
        'rados_mon_op_timeout': str(op_timeout),
        'rados_osd_op_timeout': str(op_timeout),
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
        capture_stderr(self.config)
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


# --- stderr: nothing secret escapes ------------------------------------------------------

_stderr = {'real': None, 'file': None, 'pos': 0, 'secrets': ()}
_QUOTED_KEY = re.compile(r"(?i)(key\w*\W{0,3}')[^']*'")
_KEYISH = re.compile(r'[A-Za-z0-9+/]{28,}={0,2}')


def scrub(text, secrets=()):
    """``text`` without the given secrets, quoted keys or anything shaped like one."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, '<hidden>')
    text = _QUOTED_KEY.sub(lambda m: m.group(1) + "<hidden>'", text)
    return _KEYISH.sub('<hidden>', text)


def capture_stderr(config):
    """Point fd 2 at a private file until ``drain_stderr`` (idempotent)."""
    import tempfile
    secrets = tuple(v for v in (config.get('key'),) if v)
    _stderr['secrets'] = tuple(set(_stderr['secrets'] + secrets))
    if _stderr['real'] is not None:
        return
    try:
        import sys
        sys.stderr.flush()
        f = tempfile.TemporaryFile()
        _stderr['real'] = os.dup(2)
        os.dup2(f.fileno(), 2)
        _stderr['file'] = f
        _keep_fault_reports(_stderr['real'])
    except (IOError, OSError):
        pass


def _keep_fault_reports(fd):
    """A process librados aborts never drains its capture file: its fatal-signal
    stack (framework.entry's faulthandler, Python frames only) goes to ``fd``, the
    real stderr, instead."""
    import faulthandler
    if faulthandler.is_enabled():
        _stderr['fault_file'] = os.fdopen(fd, 'w', closefd=False)
        faulthandler.enable(file=_stderr['fault_file'], all_threads=True)


def drain_stderr():
    """Copy what the Ceph libraries printed since the last call, scrubbed."""
    f, real = _stderr['file'], _stderr['real']
    if f is None:
        return
    try:
        data = os.pread(f.fileno(), 1 << 20, _stderr['pos'])
        if not data:
            return
        _stderr['pos'] += len(data)
        text = scrub(data.decode('utf-8', 'replace'), _stderr['secrets'])
        out = text.encode('utf-8')
        while out:
            out = out[os.write(real, out):]
    except (IOError, OSError):
        pass


# --- turning exceptions into faults -------------------------------------------------------

def _translate(driver, name, args, e, fault):
    if type(e).__module__ in ('rados', 'rbd'):
        return ceph_error(e, '%s %s' % (name, args[0] if args else ''), fault)
    return None


# a rados/rbd exception escaping a primitive becomes an SR fault; what the libraries
# printed on stderr is drained (scrubbed) after every primitive
mapped = primitive_faults(_translate, after=drain_stderr)


def rbd_module():
    import rbd
    return rbd


def rados_module():
    import rados
    return rados
