"""Where things live in ZFS and how a listing becomes VDIs: the one place for names.

    <parent>/<sr_uuid>                       the SR: a filesystem, srkit:sr=<sr_uuid>
    <parent>/<sr_uuid>/<vdi_uuid>            a writable VDI: a zvol
    <parent>/<sr_uuid>/<any zvol>@<vdi_uuid> a snapshot VDI: a ZFS snapshot
    <...>/<vdi_uuid>@base-<clone_uuid>       the origin of a clone of a writable VDI
    <parent>/<sr_uuid>/retired-<random>      a deleted (or reverted-away) zvol kept
                                             while its snapshots are VDIs or have clones
    <...>@retired-<vdi_uuid>                 a deleted snapshot VDI kept for its clones
    <parent>/<sr_uuid>/revert-<vdi_uuid>     a revert in progress (rolled forward or
                                             back by the next scan)
    <...>@x-<unix time>-<random>             a temporary snapshot (extents), dropped by
                                             scan once older than the GC grace period

Identity comes only from these names, never from properties: ZFS snapshots inherit
their dataset's user properties, so a snapshot whose own ``srkit:meta`` was never
set would otherwise show its parent's. The stored JSON therefore carries the uuid it
was written for, and a value whose uuid differs from the name is ignored.
"""

META_PROP = 'srkit:meta'
SR_PROP = 'srkit:sr'
POOL_PROP = 'srkit:created-pool'   # on a pool's root dataset: srkit made this pool
MAX_META = 8000                    # ZFS refuses user property values of 8 KiB and more

BASE = 'base-'
RETIRED = 'retired-'
REVERT = 'revert-'
TEMP = 'x-'

LIST_PROPS = ('name', 'type', 'volsize', 'used', 'referenced', 'refreservation',
              'origin', 'clones', META_PROP)

_HEX = frozenset('0123456789abcdef')


def is_uuid(text):
    parts = text.split('-')
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and set(''.join(parts)) <= _HEX


def sr_dataset(parent, sr_uuid):
    return '%s/%s' % (parent.rstrip('/'), sr_uuid)


def zvol(sr_ds, uuid):
    return '%s/%s' % (sr_ds, uuid)


def snap(dataset, name):
    return '%s@%s' % (dataset, name)


def leaf(name):
    """The last component of a dataset name, or the snapshot name after '@'."""
    if '@' in name:
        return name.split('@', 1)[1]
    return name.rsplit('/', 1)[-1]


def temp_name(now, random):
    return '%s%d-%s' % (TEMP, int(now), random)


def temp_time(leaf):
    """When a temporary snapshot was taken (0 for a name without a time: old enough)."""
    try:
        return int(leaf[len(TEMP):].split('-', 1)[0])
    except ValueError:
        return 0


def encode_meta(uuid, meta):
    import json
    record = dict(meta)
    record['_uuid'] = uuid
    text = json.dumps(record, sort_keys=True, separators=(',', ':'))
    if len(text.encode('utf-8')) >= MAX_META:
        # the description is the only free-form text that can grow this large
        over = len(text.encode('utf-8')) - MAX_META + 64
        desc = record.get('name_description', '')
        record['name_description'] = desc[:max(0, len(desc) - over)]
        text = json.dumps(record, sort_keys=True, separators=(',', ':'))
    return text


def decode_meta(uuid, text):
    """The meta stored for ``uuid``, or None when the value is absent or not its own."""
    import json
    if not text or text == '-':
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.pop('_uuid', None) != uuid:
        return None
    return dict((str(k), str(v)) for k, v in record.items())


class Row(object):
    """One line of ``zfs list -Hp -o LIST_PROPS``."""
    __slots__ = ('name', 'type', 'volsize', 'used', 'referenced', 'refreservation',
                 'origin', 'clones', 'meta_text')

    def __init__(self, fields):
        fields = list(fields) + ['-'] * (len(LIST_PROPS) - len(fields))
        self.name, self.type = fields[0], fields[1]
        self.volsize = _num(fields[2])
        self.used = _num(fields[3])
        self.referenced = _num(fields[4])
        self.refreservation = _num(fields[5])
        self.origin = '' if fields[6] == '-' else fields[6]
        self.clones = [c for c in fields[7].split(',') if c and c != '-']
        self.meta_text = fields[8]

    @property
    def dataset(self):
        return self.name.split('@', 1)[0]

    @property
    def leaf(self):
        return leaf(self.name)

    def vdi_uuid(self):
        """The VDI this row is, by name alone, or None."""
        if self.type == 'volume' and is_uuid(self.leaf):
            return self.leaf
        if self.type == 'snapshot' and is_uuid(self.leaf):
            return self.leaf
        return None

    def __repr__(self):
        return 'Row(%s)' % self.name


def _num(text):
    return int(text) if text and text.isdigit() else 0


def parse_rows(text):
    return [Row(line.split('\t')) for line in text.splitlines() if line.strip()]
