"""A test driver: LocalSR plus a declared secret option, careless with it on
purpose (logs it, puts it in an error) so the framework's masking is tested."""
from drivers.local.driver import LocalDriver
from framework.errors import SRError
from framework.options import Option


class SecretDriver(LocalDriver):
    name = 'Secret'
    options = LocalDriver.options + (
        Option('password', 'backend password', required=True, secret=True),)

    def sr_attach(self):
        self.ctx.log.info('attaching with password %s' % self.config['password'])
        LocalDriver.sr_attach(self)

    def probe(self):
        raise SRError('SRUnavailable', 'login refused for password %s'
                      % self.config['password'])
