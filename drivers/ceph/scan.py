"""sr_scan of an RBD SR: the index checked against the images, orphans collected
(on the SR master only); the intents of dead commands are recovery.py's.

Identity never comes from metadata librbd may have copied: a clone inherits all
of its parent's image metadata, so a ``srkit.vdi.<uuid>`` key on an image is
believed only when the image is the one that VDI names:

* a VDI ``U`` of kind image lives on the image named ``U``;
* a snapshot VDI ``S`` lives on the image that has an RBD snapshot named ``S``
  (snapshot names are uuids: there is at most one).

Every other ``srkit.*`` key on an image is inherited garbage and is ignored.
"""

from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, rbd_module
from drivers.ceph.reclaim import user_snaps


class Scan(object):
    """The index checked against the images (``ctx``: SRContext; ``index``: Index;
    ``images``: Images; ``reclaim``: Reclaim, to collect orphans). Public:
    ``list()`` ({uuid: Volume}, repairing the index), ``read_image(name)``."""

    def __init__(self, ctx, index, images, reclaim):
        self.ctx = ctx
        self.index = index
        self.images = images
        self.reclaim = reclaim

    def list(self):
        rbd = rbd_module()
        index = self.index.read()
        intents = self.index.intents(index)
        try:
            images = set(rbd.RBD().list(self.ctx.io))
        except rbd.Error as e:
            raise ceph_error(e, 'listing images', 'SRScan')
        entries, used, retained = {}, {}, set()
        for key, value in index.items():
            if key.startswith(L.VDI_PREFIX):
                entries[key[len(L.VDI_PREFIX):]] = L.Entry.load(key[len(L.VDI_PREFIX):], value)
            elif key.startswith(L.USED_PREFIX):
                used[key[len(L.USED_PREFIX):]] = int(value or 0)
            elif key.startswith(L.RETAINED_PREFIX):
                retained.add(key[len(L.RETAINED_PREFIX):])
        # images that commands in flight are building are theirs, not orphans
        building = set(u for u, i in intents.items() if i.get('op') in ('create', 'clone'))
        known = set(e.image for e in entries.values()) | retained | building
        stale = [u for u, e in entries.items() if e.image not in images]
        unknown = [n for n in images if n not in known
                   and not n.startswith(L.ATTACH_CLONE_PREFIX)]
        if stale or unknown:
            self._repair(entries, stale, unknown)
        return dict((u, L.volume(e, used.get(u, 0))) for u, e in entries.items())

    # --- the index against the images -------------------------------------------------
    def _repair(self, entries, stale, unknown):
        """Bring the index in line with the images (the authoritative metadata)."""
        remove = [L.VDI_PREFIX + u for u in stale] + [L.USED_PREFIX + u for u in stale]
        for u in stale:
            self.ctx.log.info('index: dropping %s (image %s is gone)' % (u, entries[u].image))
            del entries[u]
        values = {}
        # read in a child process: a crash inside librbd there must not kill the scan
        # (inspect.py; issue 16, finding 2)
        from drivers.ceph.inspect import read_images
        founds = read_images(self.ctx, unknown) if unknown else {}
        for name in unknown:
            found = founds.get(name)
            if found == 'broken':
                if self.ctx.is_master:
                    self.ctx.log.info('image %s is listed but cannot be opened (a create or '
                                      'remove killed inside librbd): removing it' % name)
                    self.reclaim.remove_image(name)
                continue
            if found is None:
                continue
            restored, needed, age = found
            for entry in restored:
                entries[entry.uuid] = entry
                values[L.VDI_PREFIX + entry.uuid] = entry.dump()
                self.ctx.log.info('index: restored %s from image %s' % (entry.uuid, name))
            if any(e.uuid == name for e in restored):
                continue
            if needed:
                values[L.RETAINED_PREFIX + name] = ''
            elif self.ctx.is_master and age > self.ctx.grace():
                self.ctx.log.info('image %s holds no VDI and nothing needs it: removing it'
                                  % name)
                self.reclaim.gc_image(name)
        if values or remove:
            self.index.update(values, remove)

    def read_image(self, name):
        """([Entry] the image holds, needed by a dependant?, age in seconds); 'broken'
        for an image listed but gone or unopenable; None on another error."""
        import datetime
        rbd = rbd_module()
        try:
            with self.images.open(name, read_only=True) as img:
                md = dict(img.metadata_list())
                size = img.size()
                # a snapshot in librbd's trash is a removal cut short (reclaim.py): no VDI
                snaps = dict((s['name'], s['size']) for s in user_snaps(img))
                children = set()
                for snap in snaps:
                    with self.images.open(name, read_only=True, snapshot=snap) as s:
                        if list(s.list_children2()):
                            children.add(snap)
                try:
                    created = img.create_timestamp()
                    age = (datetime.datetime.utcnow() - created).total_seconds()
                except (AttributeError, rbd.Error):
                    age = 0
        except SRError:
            return 'broken'
        except rbd.ImageNotFound:
            return 'broken'
        except rbd.Error:
            return None
        restored = []
        own = md.get(L.META_VDI_PREFIX + name)
        if own:
            entry = L.Entry.load(name, own)
            if entry.kind == L.IMAGE:
                entry.image, entry.size = name, size
                restored.append(entry)
        for snap, snap_size in snaps.items():
            text = md.get(L.META_VDI_PREFIX + snap)
            if not text:
                continue
            entry = L.Entry.load(snap, text)
            if entry.kind == L.SNAP:
                entry.image, entry.snap, entry.size = name, snap, snap_size
                restored.append(entry)
        needed = bool(children) or any(e.kind == L.SNAP for e in restored)
        return restored, needed, age
