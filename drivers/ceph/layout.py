"""Where an SR and its VDIs live in a Ceph pool: names and metadata keys.

SR      = one RBD namespace in ``pool`` (default name: the SR uuid; device-config
          ``namespace`` overrides it, e.g. for a cephx user confined to it).
          The object ``srkit.sr`` in that namespace marks the SR; its omap is
          the SR index (one key per VDI), so a scan is one omap read.
VDI     = one RBD image named ``<vdi uuid>`` (layering, exclusive-lock,
          object-map, fast-diff, deep-flatten).
snapshot VDI = an RBD snapshot named ``<snapshot uuid>`` of the image of the
          VDI it was taken from.
clone   = a COW clone of a protected snapshot; cloning a VDI first takes a hidden
          snapshot ``.clone-<clone uuid>`` of its image.

Authoritative VDI metadata is stored in the image metadata of the image that
holds the VDI (key ``srkit.vdi.<uuid>``, JSON), so a lost index is rebuilt from
the images themselves. librbd copies image metadata into clones, so identity
comes from names only: the key ``srkit.vdi.U`` counts on the image named ``U``
(a VDI) or on the image with a snapshot named ``U`` (a snapshot VDI), nowhere
else (scan.py). The index is a cache of it plus what changes often
(``used.<uuid>``: bytes allocated at the last detach/snapshot) and the intents
of commands in flight (``pending.<uuid>``, index.py).

Images that no VDI names any more but that still carry dependants (snapshots
that are VDIs, clones) are *retained* (index key ``retained.<image>``); they are
removed when the last dependant goes.
"""

FORMAT = '1'
SR_OBJECT = 'srkit.sr'
SR_FORMAT_KEY = 'sr.format'
SR_UUID_KEY = 'sr.uuid'
SR_CREATED_KEY = 'sr.created'

VDI_PREFIX = 'vdi.'          # index: vdi.<uuid> -> entry JSON
USED_PREFIX = 'used.'        # index: used.<uuid> -> bytes (decimal)
RETAINED_PREFIX = 'retained.'  # index: retained.<image> -> ''
PENDING_PREFIX = 'pending.'    # index: pending.<uuid> -> intent JSON (index.py)

META_PREFIX = 'srkit.'           # every image metadata key of ours
META_VDI_PREFIX = 'srkit.vdi.'   # image metadata: srkit.vdi.<uuid> -> entry JSON
META_DEPTH = 'srkit.depth'       # clone depth of the image (0 = not a clone)

CLONE_SNAP_PREFIX = '.clone-'    # hidden snapshot a clone hangs from
ATTACH_CLONE_PREFIX = '.ro-'     # temporary clone to attach a snapshot through rbd-fuse
LEASE_PREFIX = 'srkit.active.'   # rados object: which host may write a VDI

IMAGE = 'image'
SNAP = 'snap'

FEATURES = 1 | 4 | 8 | 16 | 32   # layering | exclusive-lock | object-map | fast-diff | deep-flatten

LEGACY_POOL_PREFIX = 'RBD_XenStorage-'   # RBDSR v1: one pool per SR


def namespace_of(sr_uuid, config):
    return config.get('namespace') or sr_uuid


def image_of(uuid):
    return uuid


def is_vdi_name(name):
    """Image and snapshot names that are VDIs (uuids), not helpers."""
    return len(name) == 36 and name.count('-') == 4 and not name.startswith('.')


def clone_snap_name(clone_uuid):
    return CLONE_SNAP_PREFIX + clone_uuid


def attach_clone_name(snap_uuid, host_key):
    return '%s%s.%s' % (ATTACH_CLONE_PREFIX, snap_uuid, host_key)


def volume(entry, used):
    """The framework's Volume of ``entry`` (``used``: bytes allocated)."""
    from framework.driver import Volume
    return Volume(entry.uuid, entry.size, used, entry.meta,
                  read_only=entry.kind == SNAP or entry.meta.get('read_only') == 'true')


class Entry(object):
    """One VDI as the index and the image metadata record it."""
    __slots__ = ('uuid', 'kind', 'image', 'snap', 'size', 'meta')

    def __init__(self, uuid, kind, image, snap, size, meta):
        self.uuid = uuid
        self.kind = kind
        self.image = image
        self.snap = snap
        self.size = int(size)
        self.meta = dict(meta)

    def dump(self):
        import json
        return json.dumps({'kind': self.kind, 'image': self.image, 'snap': self.snap,
                           'size': self.size, 'meta': self.meta}, sort_keys=True)

    @classmethod
    def load(cls, uuid, text):
        import json
        d = json.loads(text)
        return cls(uuid, d['kind'], d['image'], d.get('snap') or '', d.get('size', 0),
                   d.get('meta') or {})

    def __repr__(self):
        return 'Entry(%s %s %s@%s)' % (self.uuid, self.kind, self.image, self.snap)


def forget_record(img, uuid):
    """Remove VDI ``uuid``'s record from the metadata of the open image ``img`` (a
    record already gone is fine: the step is redone after a kill)."""
    try:
        img.metadata_remove(META_VDI_PREFIX + uuid)
    except KeyError:
        pass
