"""One command being served: the request, the driver class, and what they give on
demand (the driver built from the validated device-config, the xapi session, this
host's state directory), with the two questions every command asks the driver:
is a primitive there, which volume is at a location.

framework.commands dispatches to it; the export pipeline (framework.export.transfer)
builds one without going through the SMAPIv1 commands.
"""

import os

from framework import driver as contract
from framework.errors import SRError
from framework.options import is_sensitive, is_sr_master, validate
from framework.request_fields import check_location

STATE_ROOT = '/run/srkit'


def _state_root():
    return os.environ.get('SRKIT_STATE_DIR') or STATE_ROOT


class Invocation(object):
    """One command being served: the request plus lazily built driver and xapi."""

    def __init__(self, request, driver_cls, log):
        self.request = request
        self.command = request.command
        self.driver_cls = driver_cls
        self.log = log
        self.sr_uuid = request.get('sr_uuid')
        self.vdi_uuid = request.get('vdi_uuid')
        self._driver = None
        self._xapi = None
        declared = set(o.key for o in driver_cls.options if o.secret)
        for key, value in request.device_config.items():
            if is_sensitive(key) or key in declared:
                log.hide(value)

    @property
    def xapi(self):
        if self._xapi is None:
            from framework.xapi import Xapi
            self._xapi = Xapi(self.request.get('session_ref'), self.request.get('sr_ref'),
                              self.request.get('subtask_of'))
        return self._xapi

    @property
    def state_dir(self):
        path = os.path.join(_state_root(), self.sr_uuid or 'probe')
        if not os.path.isdir(path):
            os.makedirs(path, 0o700)
        return path

    @property
    def driver(self):
        if self._driver is None:
            self._driver = self._make_driver()
        return self._driver

    def require(self, primitive):
        """Unimplemented (38) unless this SR type's driver has ``primitive``."""
        if not contract.implements(self.driver_cls, primitive):
            raise SRError('Unimplemented', '%s SRs do not support %s'
                          % (self.driver_cls.name, self.command))

    def volume_at(self, location=None):
        """The driver's volume at ``location`` (default: the request's vdi_location);
        VDIMissing (144) if there is none."""
        location = check_location(location or self.request.get('vdi_location'))
        volume = self.driver.get(location)
        if volume is None:
            raise SRError('VDIMissing', 'no VDI at location %s in SR %s'
                          % (location, self.sr_uuid))
        return volume

    def _make_driver(self):
        dc = self.request.device_config

        def resolve(secret_uuid):
            if not self.xapi.available:
                raise SRError('SRUnavailable', 'a *_secret device-config key needs xapi, '
                              'which is not reachable for %s; use a file-based '
                              'credential for SRs that must attach at boot' % self.command)
            value = self.xapi.secret(secret_uuid)
            self.log.hide(value)
            return value
        config = validate(self.driver_cls.options, dc, resolve)
        for opt in self.driver_cls.options:
            if opt.secret:
                self.log.hide(config.get(opt.key))
        host_ref = self.request.get('host_ref')
        lookup = (lambda: self.xapi.host_uuid(host_ref)) if self.xapi.available and host_ref \
            else None
        ctx = contract.Context(self.state_dir, self.log, is_sr_master(dc), lookup)
        return self.driver_cls(self.sr_uuid, config, ctx)
