"""One log line per command, to syslog local2 (/var/log/SMlog on a host).

Values of sensitive device-config keys and the session ref never reach a line.
SRKIT_LOG_FILE (set by the host simulator) sends the lines to a file instead.
"""

import os
import sys

from framework.options import is_sensitive

IDENT = 'srkit'
MASK = '******'


class Log(object):
    def __init__(self):
        self.path = os.environ.get('SRKIT_LOG_FILE')
        self.prefix = '[%d] ' % os.getpid()
        self._secrets = []
        self._syslog = None

    def hide(self, value):
        """Never print ``value`` (a resolved secret), wherever it turns up."""
        if value and len(value) >= 4:
            self._secrets.append(value)

    def scrub(self, text):
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def info(self, message):
        self._emit(6, message)

    def error(self, message):
        self._emit(3, message)

    def _emit(self, priority, message):
        lines = self.scrub(message).splitlines() or ['']
        try:
            if self.path:
                with open(self.path, 'a') as f:
                    for line in lines:
                        f.write('%s: %s%s\n' % (IDENT, self.prefix, line))
                return
            if self._syslog is None:
                import syslog
                syslog.openlog(IDENT, 0, syslog.LOG_LOCAL2)
                self._syslog = syslog
            for line in lines:
                self._syslog.syslog(priority, self.prefix + line)
        except Exception:  # logging must never turn a good reply into a failure
            pass


def redacted(params):
    """The request struct as it may be logged."""
    shown = {}
    for key, value in params.items():
        if key == 'session_ref':
            value = MASK
        elif key == 'device_config' and isinstance(value, dict):
            value = dict((k, MASK if is_sensitive(k) else v) for k, v in value.items())
        shown[key] = value
    return shown


def describe_exception():
    import traceback
    return ''.join(traceback.format_exception(*sys.exc_info()))
