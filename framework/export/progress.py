"""Progress of a transfer: a bar with throughput on stderr when it is a terminal,
and/or a JSON status file (what the xapi plugin's ``progress`` call returns)."""

import json
import os
import sys
import time


def write_status(path, record):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, sort_keys=True)
    os.rename(tmp, path)


class Progress(object):
    def __init__(self, total, label, enabled=None, status=None):
        self.total = max(int(total), 1)
        self.label = label
        self.done = 0
        self.start = self.last = time.time()
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.status = status
        if status:
            self._save('running')

    def record(self, state):
        return {'state': state, 'done': self.done, 'total': self.total,
                'mib_per_s': round(self._rate(time.time()), 1)}

    def _save(self, state):
        write_status(self.status, self.record(state))

    def _rate(self, now):
        return self.done / max(now - self.start, 1e-6) / 1048576.0

    def add(self, nbytes):
        self.done += nbytes
        now = time.time()
        if now - self.last >= 0.5 and (self.enabled or self.status):
            self.last = now
            if self.enabled:
                self._draw(now)
            if self.status:
                self._save('running')

    def _draw(self, now, end='\r'):
        fraction = min(self.done / float(self.total), 1.0)
        width = 30
        sys.stderr.write('%s [%-*s] %3d%% %8.1f MiB %7.1f MiB/s%s' % (
            self.label, width, '#' * int(fraction * width), fraction * 100,
            self.done / 1048576.0, self._rate(now), end))
        sys.stderr.flush()

    def finish(self):
        if self.enabled:
            self._draw(time.time(), os.linesep)
        if self.status:
            self._save('running')   # the caller writes 'done' once everything is closed
