"""device-config declared as data.

A driver lists ``Option`` objects; from that one list the framework validates the
PBD's device_config, builds the driver-info ``configuration`` list and the admin
docs (``docs/device-config.md`` is generated from it).

Secrets: an option declared ``secret=True`` may be given either in clear as
``key`` or, the xapi way, as ``key_secret=<secret uuid>``; the framework resolves
the secret through xapi's secret API and hands the driver the value under ``key``.
Secret values are never logged nor echoed in faults.

``SRmaster`` is the one key no driver declares: xapi adds it in front of the PBD's
device_config on every SM call, "true" on the SR master's host. The rule is written
here once, for the framework reading it, the host's ``srkit vdi-export`` (which
builds its job as xapi builds a call) and the simulator (which plays xapi).
"""

from framework.errors import SRError

SECRET_SUFFIX = '_secret'
PATH = 'path'  # Option kind: an absolute, normalised filesystem path
SR_MASTER = 'SRmaster'


class Option(object):
    __slots__ = ('key', 'description', 'required', 'default', 'secret', 'choices', 'kind')

    def __init__(self, key, description, required=False, default=None,
                 secret=False, choices=None, kind=str):
        self.key = key
        self.description = description
        self.required = required
        self.default = default
        self.secret = secret
        self.choices = choices
        self.kind = kind  # str; int for a whole number (the driver receives an int); PATH

    def doc(self):
        """One line for driver-info ``configuration`` and the docs."""
        text = self.description
        if self.required:
            text += ' (required)'
        if self.default is not None:
            text += ' (default: %s)' % self.default
        if self.choices:
            text += ' (one of: %s)' % ', '.join(self.choices)
        if self.kind == PATH:
            text += ' (an absolute path)'
        if self.secret:
            text += ' (secret: may be given as %s%s=<xapi secret uuid>)' % (
                self.key, SECRET_SUFFIX)
        return text


def configuration(options):
    """The driver-info ``configuration`` list: xapi shows it in SM.configuration."""
    return [{'key': o.key, 'description': o.doc()} for o in options]


def is_sensitive(key):
    """Keys whose values must never reach a log line or a reply."""
    low = key.lower()
    return (low.endswith(SECRET_SUFFIX) or 'password' in low or 'passwd' in low
            or low in ('key', 'secret') or low.endswith('_key') or low.endswith('-key'))


def validate(options, device_config, resolve_secret):
    """Return the driver's config: declared keys only, defaults filled in.

    ``resolve_secret(uuid)`` fetches a secret's value (a callback into xapi; only
    called when a ``*_secret`` key is present). Missing or invalid keys raise
    ConfigParamsMissing (115) naming every offending key at once.
    """
    config = {}
    missing = []
    invalid = []
    for opt in options:
        value = device_config.get(opt.key)
        if opt.secret and (opt.key + SECRET_SUFFIX) in device_config:
            value = resolve_secret(device_config[opt.key + SECRET_SUFFIX])
        if value is None or value == '':
            if opt.required:
                missing.append(opt.key + (' (or %s%s)' % (opt.key, SECRET_SUFFIX)
                                          if opt.secret else ''))
                continue
            value = opt.default
        elif opt.choices and value not in opt.choices:
            invalid.append('%s=%s (expected one of %s)' % (
                opt.key, value, ', '.join(opt.choices)))
            continue
        if opt.kind is int and value is not None:
            text = str(value)
            if not text or not set(text) <= set('0123456789'):
                invalid.append('%s=%s (not a whole number)' % (opt.key, text))
                continue
            value = int(text)
        if opt.kind == PATH and value is not None and not _is_clean_path(value):
            invalid.append('%s=%s (not an absolute, normalised path)' % (opt.key, value))
            continue
        config[opt.key] = value
    config_error(missing, invalid)
    return config


def _is_clean_path(text):
    # a relative or '..' path depends on the driver's cwd: on a host that is '/'
    import posixpath
    return isinstance(text, str) and text.startswith('/') and not text.startswith('//') and '\0' not in text \
        and posixpath.normpath(text) == text


def config_error(missing=(), invalid=()):
    """Raise ConfigParamsMissing (115) naming every missing and invalid key, if any.

    Drivers with rules across keys ("monitors, unless conf is given") call this
    too, so every device-config problem reads the same to an admin.
    """
    problems = []
    if missing:
        problems.append('device-config is missing the following parameters: '
                        + ', '.join(missing))
    if invalid:
        problems.append('device-config has invalid values: ' + ', '.join(invalid))
    if problems:
        raise SRError('ConfigParamsMissing', '; '.join(problems))


def sr_master_host(shared, pool_master, pbd_host=None):
    """The host xapi makes SR master (Helpers.i_am_srmaster): the pool master for a
    shared SR, else the host of the SR's one PBD (the pool master while it has none)."""
    return pool_master if shared or not pbd_host else pbd_host


def device_config_of_call(pbd_device_config, on_sr_master):
    """What an SM call receives as device_config: the PBD's, with SRmaster in front
    ("true" on the SR master's host; sr_create and sr_probe always get "true"). The
    PBD's keys are kept as they are; it holds no SRmaster of its own (xapi drops the
    key when it writes the PBDs after sr_create)."""
    config = {SR_MASTER: 'true' if on_sr_master else 'false'}
    config.update(pbd_device_config)
    return config


def is_sr_master(device_config):
    """Whether the call runs on the SR master's host (the master-only commands)."""
    return device_config.get(SR_MASTER) == 'true'
