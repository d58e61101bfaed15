"""Credentials and settings for the datapath's helper processes: the ceph.conf and
keyring files a helper daemon (rbd-fuse, rbd-nbd) reads them from, in the SR's
per-host state dir (never a key on a command line; removed at sr_detach and
sr_delete), its CEPH_ARGS and admin socket, and the key itself for krbd, which
cannot read a keyring."""

import os


def client_files(state_dir, config):
    """(conf path, CEPH_ARGS) for a helper daemon: never a key on a command line."""
    user = config.get('user') or 'admin'
    args = ['--id', user]
    conf = config.get('conf')
    if not conf:
        conf = os.path.join(state_dir, 'ceph.conf')
        text = '[global]\nmon_host = %s\n' % config.get('monitors', '')
        _write_private(conf, text)
    if config.get('monitors') and config.get('conf'):
        args += ['--mon_host', config['monitors'].replace(' ', '')]
    if config.get('key'):
        keyring = os.path.join(state_dir, 'keyring.client.%s' % user)
        _write_private(keyring, '[client.%s]\n\tkey = %s\n' % (user, config['key']))
        args += ['--keyring', keyring]
    elif config.get('keyring'):
        args += ['--keyring', config['keyring']]
    args += ['--log_to_stderr', 'false', '--err_to_stderr', 'true',
             '--client_mount_timeout', str(config.get('connect_timeout') or 10)]
    return conf, ' '.join(args)


def admin_socket_arg(state_dir, image, relative_ok=False):
    """A private admin socket per helper daemon (``ceph --admin-daemon <path> perf
    dump``) in ``<state_dir>/asok``. A unix socket address holds ~107 bytes: a longer
    path is given relative to the daemon's working directory (``state_dir``) when
    the daemon keeps it (``relative_ok``), else the socket is disabled. CEPH_ARGS is
    split on blanks and never unquoted: an empty value is ``--admin_socket=``."""
    path = os.path.join(state_dir, 'asok', '%s.asok' % image)
    if len(path.encode()) > 100 and relative_ok:
        path = os.path.join('asok', '%s.asok' % image)
    if len(path.encode()) > 100 or ' ' in path:
        return '--admin_socket='
    if not os.path.isdir(os.path.join(state_dir, 'asok')):
        os.makedirs(os.path.join(state_dir, 'asok'), 0o700)
    return '--admin_socket=%s' % path


def drop_client_files(state_dir):
    """Remove what client_files wrote (the keyring holds the key): sr_detach/sr_delete."""
    for name in os.listdir(state_dir) if os.path.isdir(state_dir) else ():
        if name == 'ceph.conf' or name.startswith('keyring.'):
            try:
                os.unlink(os.path.join(state_dir, name))
            except OSError:
                pass


def _write_private(path, text):
    try:
        with open(path) as f:
            if f.read() == text:
                return
    except (IOError, OSError):
        pass
    fd = os.open(path + '.tmp', os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as f:
        f.write(text)
    os.rename(path + '.tmp', path)


def secret(config, conf_get):
    """The cephx key of the SR's user, wherever device-config puts it: ``key``, the
    ``keyring`` file, or what the ``conf`` names (``key``, ``keyfile``, ``keyring``).
    ``conf_get(option)`` reads the effective option of a librados handle made from
    this device-config (metavariables expanded). None when nothing holds it."""
    if config.get('key'):
        return config['key']
    name = 'client.%s' % (config.get('user') or 'admin')
    paths = [config['keyring']] if config.get('keyring') else []
    if not paths:
        inline = conf_get('key')
        if inline:
            return inline.strip()
        keyfile = conf_get('keyfile')
        if keyfile:
            try:
                with open(keyfile) as f:
                    return f.read().strip() or None
            except (IOError, OSError):
                pass
        paths = [p.strip() for p in (conf_get('keyring') or '').split(',') if p.strip()]
    for path in paths:
        key = _keyring_key(path, name)
        if key:
            return key
    return None


def _keyring_key(path, name):
    """``key`` of section ``[name]`` of a plain-text keyring file."""
    section = None
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith('[') and line.endswith(']'):
                    section = line[1:-1].strip()
                elif section == name and '=' in line:
                    key, value = line.split('=', 1)
                    if key.strip() == 'key':
                        return value.strip().strip('"')
    except (IOError, OSError, UnicodeDecodeError):
        pass
    return None
