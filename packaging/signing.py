"""GPG signing of the RPMs and of the repository metadata.

A real key: set SRKIT_GPG_KEY to its id or fingerprint (and GNUPGHOME if it is not in the
default keyring); gpg's agent asks for or supplies the passphrase. Without SRKIT_GPG_KEY a
throwaway key (RSA, which EL7's rpm verifies; no passphrase) is made once in the build's
gnupg directory and reused by later builds into the same output directory.
"""
import os
import shutil
import subprocess

THROWAWAY_UID = 'srkit throwaway signing key <srkit@localhost>'


class Signer(object):
    def __init__(self, home, key, own_agent=False):
        self.home = home
        self.key = key
        self.own_agent = own_agent

    def gpg(self, *args, **kw):
        cmd = ['gpg', '--batch', '--quiet', '--no-tty']
        if self.home:
            cmd += ['--homedir', self.home]
        return subprocess.run(cmd + list(args), check=True, stdout=subprocess.PIPE, **kw).stdout

    def sign_rpms(self, paths):
        defines = ['--define', '_gpg_name %s' % self.key,
                   # a v4 header signature plus the v3 header+payload one EL7's yum checks
                   '--define', '_gpg_digest_algo sha256',
                   # Debian's rpm names gpg2, which Debian does not ship
                   '--define', '__gpg %s' % (shutil.which('gpg') or 'gpg')]
        if self.home:
            defines += ['--define', '_gpg_path %s' % self.home]
        proc = subprocess.run(['rpmsign', '--addsign', '--rpmv3'] + defines + list(paths),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if proc.returncode:
            raise SystemExit('rpmsign failed:\n' + proc.stdout.decode(errors='replace'))

    def detach_sign(self, path):
        self.gpg('--yes', '--local-user', self.key, '--digest-algo', 'sha256',
                 '--armor', '--detach-sign', '--output', path + '.asc', path)

    def export_public(self, path):
        with open(path, 'wb') as f:
            f.write(self.gpg('--armor', '--export', self.key))

    def close(self):
        """Stop the gpg-agent this build started for the throwaway key (an admin's agent,
        holding a real key's passphrase, is left alone)."""
        if not self.own_agent:
            return
        env = dict(os.environ)
        if self.home:
            env['GNUPGHOME'] = self.home
        subprocess.run(['gpgconf', '--kill', 'gpg-agent'], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def signer(throwaway_home, say):
    key = os.environ.get('SRKIT_GPG_KEY')
    if key:
        return Signer(os.environ.get('GNUPGHOME'), key)
    home = throwaway_home
    if not os.path.isdir(home):
        os.makedirs(home)
    os.chmod(home, 0o700)
    s = Signer(home, THROWAWAY_UID, own_agent=True)
    listing = s.gpg('--with-colons', '--list-secret-keys').decode()
    if THROWAWAY_UID not in listing:
        say('no SRKIT_GPG_KEY: making a throwaway signing key in %s' % home)
        s.gpg('--passphrase', '', '--quick-generate-key', THROWAWAY_UID, 'rsa3072', 'sign',
              'never')
        listing = s.gpg('--with-colons', '--list-secret-keys').decode()
    fprs = [line.split(':')[9] for line in listing.splitlines() if line.startswith('fpr:')]
    s.key = fprs[0]
    return s
