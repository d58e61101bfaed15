"""A progress bar with throughput on stderr, only when stderr is a terminal."""

import os
import sys
import time


class Progress(object):
    def __init__(self, total, label, enabled=None):
        self.total = max(int(total), 1)
        self.label = label
        self.done = 0
        self.start = self.last = time.time()
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def add(self, nbytes):
        self.done += nbytes
        now = time.time()
        if self.enabled and now - self.last >= 0.2:
            self.last = now
            self._draw(now)

    def _draw(self, now, end='\r'):
        fraction = min(self.done / float(self.total), 1.0)
        width = 30
        rate = self.done / max(now - self.start, 1e-6) / 1048576.0
        sys.stderr.write('%s [%-*s] %3d%% %8.1f MiB %7.1f MiB/s%s' % (
            self.label, width, '#' * int(fraction * width), fraction * 100,
            self.done / 1048576.0, rate, end))
        sys.stderr.flush()

    def finish(self):
        if self.enabled:
            self._draw(time.time(), os.linesep)
