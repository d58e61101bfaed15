"""raw: the disk byte for byte. Holes are runs of zeros for the sink to write
(compress: ready-made zstd frames for long ones; a bare file stays sparse)."""

UNIT = 1024 * 1024


class Writer(object):
    supports_delta = False

    def __init__(self, out, virtual_size, runs, parent=None, unique_id=''):
        self.out = out
        self.size = virtual_size
        self.pos = 0

    def _zeros(self, upto):
        if upto > self.pos:
            self.out.zeros(upto - self.pos)
            self.pos = upto

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
        """(offset, view) pieces of the image, each valid until the next is asked for."""
        return self.src.pieces()
