"""Per-host records that a VDI is attached or active here (idempotency of the datapath).

They live in the invocation's state dir (under /run: gone on reboot, as attachments are).
"""

import os

from framework.request_fields import check_location


class Marker(object):
    """A per-host record that a VDI is attached/active here (idempotency)."""

    def __init__(self, inv, location, kind):
        self.path = _path(inv.state_dir, location, kind)

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
    return attached_in(inv.state_dir, location)


def attached_in(state_dir, location):
    """Whether vdi_attach of ``location`` completed on this host (for a driver cleaning
    a datapath that a killed vdi_attach left behind: xapi never detaches those)."""
    return os.path.exists(_path(state_dir, location, 'attach'))


def _path(state_dir, location, kind):
    return os.path.join(state_dir, '%s.%s' % (check_location(location), kind))
