"""Values a command makes rather than receives: a new uuid, the time now.

A request's own values are checked in framework.request_fields.
"""

import os
import time


def now():
    """The time now as xapi writes a snapshot_time (framework.meta.EPOCH is its zero)."""
    return time.strftime('%Y%m%dT%H:%M:%SZ', time.gmtime())


def new_uuid():
    # uuid4 by hand: importing the uuid module costs more than this whole call
    b = bytearray(os.urandom(16))
    b[6] = (b[6] & 0x0F) | 0x40
    b[8] = (b[8] & 0x3F) | 0x80
    h = ''.join('%02x' % x for x in b)
    return '%s-%s-%s-%s-%s' % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
