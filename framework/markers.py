"""Per-host records that a VDI is attached or active here (idempotency of the datapath).

They live in the invocation's state dir (under /run: gone on reboot, as attachments are).
"""

import os

from framework.values import check_location


class Marker(object):
    """A per-host record that a VDI is attached/active here (idempotency)."""

    def __init__(self, inv, location, kind):
        self.path = os.path.join(inv.state_dir, '%s.%s' % (check_location(location), kind))

    @staticmethod
    def locations(inv, kind):
        """The locations that have a ``kind`` marker on this host."""
        suffix = '.' + kind
        return sorted(n[:-len(suffix)] for n in os.listdir(inv.state_dir)
                      if n.endswith(suffix))

    def read(self):
        try:
            with open(self.path) as f:
                return f.read()
        except IOError:
            return None

    def write(self, text):
        tmp = self.path + '.tmp'
        with open(tmp, 'w') as f:
            f.write(text)
        os.rename(tmp, self.path)

    def clear(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass


def attached_here(inv, location):
    return Marker(inv, location, 'attach').read() is not None
