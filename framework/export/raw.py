"""raw: the disk byte for byte. Holes are written as zeros (zstd makes them tiny;
without compression they cost their size, as any raw image does)."""

UNIT = 1024 * 1024
_ZERO = bytes(4 * 1024 * 1024)


class Writer(object):
    supports_delta = False

    def __init__(self, out, virtual_size, runs, parent=None, unique_id=''):
        self.out = out
        self.size = virtual_size
        self.pos = 0

    def _zeros(self, upto):
        while self.pos < upto:
            n = min(len(_ZERO), upto - self.pos)
            self.out.write(memoryview(_ZERO)[:n])
            self.pos += n

    def data(self, offset, data):
        self._zeros(offset)
        self.out.write(data)
        self.pos += len(data)

    def close(self):
        self._zeros(self.size)


class Reader(object):
    """Every byte is data; the size is the stream's length (or the srkit header's)."""
    is_delta = False
    parent = ''

    def __init__(self, src, virtual_size=None):
        self.src = src
        self.virtual_size = virtual_size

    def blocks(self):
        while True:
            offset = self.src.pos
            data = self.src.read(UNIT)
            if not data:
                return
            yield offset, data
