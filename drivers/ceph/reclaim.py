"""Deletion, deferred while something depends on the data.

A VDI is deleted in this order (docs/ceph.md, "Crash safety"):

1. intent ``pending.<uuid>`` (op ``destroy``)
2. remove the image metadata ``srkit.vdi.<uuid>``: from here on the VDI is gone
3. remove ``vdi.<uuid>``/``used.<uuid>`` from the index
4. reclaim: drop snapshots nobody needs; remove the image when nothing is left on
   it, else keep it as *retained* (index ``retained.<image>``); collect the parent
   of a removed clone the same way
5. remove the intent

A retained image is one that holds no VDI of its own (no ``srkit.vdi.<image
name>`` key) but still carries snapshot VDIs or clones; it goes when its last
dependant goes. Every step is idempotent: ``finish_delete`` is also what rolls
a killed delete forward.

librbd removes a snapshot in steps too: it first moves it to its *trash*
namespace under a random name (cls_rbd ``snapshot_trash_add``), then drops its
object map, its snap id and the snapshot itself. A kill in between leaves a
trashed snapshot no name of the driver reaches, and which keeps its image from
ever being removed. The driver only removes snapshots nothing needs, and a
protected one (what a v1 clone hangs from) never reaches the trash: every trashed
snapshot on an image the driver collects is such a half-done removal, finished by
id (``finish_trashed_snaps``).
"""

import time

from framework import crash
from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import rbd_module

REMOVE_TRIES = 20
TRASH_NAMESPACE = 2   # RBD_SNAP_NAMESPACE_TYPE_TRASH of librbd's list_snaps


def user_snaps(img):
    """The snapshots of ``img`` the driver made (none of librbd's trash)."""
    return [s for s in img.list_snaps() if s.get('namespace', 0) != TRASH_NAMESPACE]


class Reclaim(object):
    """Deleting and collecting images (``ctx``: SRContext; ``index``: Index;
    ``images``: Images; ``watchers``: Watchers, to evict a dead process's watch
    before a remove). Public: ``finish_delete(intent)``, ``gc_image(name, ignore)``,
    ``remove_image(name, ignore)``, ``drop_snap_if_unused(img, image, snap, ignore)``,
    ``finish_trashed_snaps(img, image)``, ``purge_image(name)``."""

    def __init__(self, ctx, index, images, watchers):
        self.ctx = ctx
        self.index = index
        self.images = images
        self.watchers = watchers

    def finish_delete(self, intent):
        """Steps 2-5 of a delete; safe to repeat."""
        rbd = rbd_module()
        uuid, image, snap = intent['uuid'], intent['image'], intent.get('snap') or ''
        keep = None
        try:
            with self.images.open(image) as img:
                L.forget_record(img, uuid)
                crash.point('rbd.destroy.after-meta')
                self.index.update(remove=(L.VDI_PREFIX + uuid, L.USED_PREFIX + uuid))
                crash.point('rbd.destroy.after-index')
                self.finish_trashed_snaps(img, image)
                if snap:
                    self.drop_snap_if_unused(img, image, snap, ignore=uuid)
                else:
                    for s in user_snaps(img):
                        if s['name'].startswith(L.CLONE_SNAP_PREFIX):
                            self.drop_snap_if_unused(img, image, s['name'], ignore=uuid)
                    keep = [s['name'] for s in img.list_snaps()]
                    if keep:
                        self.index.update({L.RETAINED_PREFIX + image: ''})
                        self.ctx.log.info('VDI %s deleted; image retained for %d dependant '
                                          'snapshot(s)' % (uuid, len(keep)))
        except SRError as e:
            if e.name != 'VDIMissing':
                raise
            self.index.update(remove=(L.VDI_PREFIX + uuid, L.USED_PREFIX + uuid))
            if not snap:
                keep = []   # a half-removed image is finished below
        except rbd.ImageNotFound:
            pass
        if snap:
            self.gc_image(image, ignore=uuid)
        elif keep == []:
            self.remove_image(image, ignore=uuid)
        crash.point('rbd.destroy.after-reclaim')
        self.index.update(remove=(L.PENDING_PREFIX + uuid,))

    def drop_snap_if_unused(self, img, image, snap, ignore=None):
        """Remove a snapshot nobody needs: not a VDI, no clone children, not being
        made by a command in flight."""
        try:
            img.metadata_get(L.META_VDI_PREFIX + snap)
            return False  # still a VDI
        except KeyError:
            pass
        owner = snap[len(L.CLONE_SNAP_PREFIX):] if snap.startswith(L.CLONE_SNAP_PREFIX) else snap
        if self.index.in_flight(owner, ignore):
            return False
        if snap not in set(s['name'] for s in img.list_snaps()):
            return True   # no such snapshot (any more)
        try:
            with self.images.open(image, read_only=True, snapshot=snap) as s:
                if list(s.list_children2()):
                    return False
        except SRError as e:
            if e.name != 'VDIMissing':
                raise
            # listed, yet librbd cannot open it: a create_snap killed before it wrote
            # the snapshot's object map (ENOENT). Nothing can have been cloned from it.
            self.ctx.log.info('image %s: snapshot %s cannot be opened (made half by a '
                              'killed command); removing it' % (image, snap))
        if img.is_protected_snap(snap):
            img.unprotect_snap(snap)
        # librbd's removal is itself several steps (module doc): a kill inside it
        # leaves a trashed snapshot that the recovery finishes
        crash.point('rbd.reclaim.before-snap-remove')
        img.remove_snap(snap)
        crash.point('rbd.reclaim.after-snap-remove')
        return True

    def finish_trashed_snaps(self, img, image):
        """Finish the snapshot removals librbd began on ``img`` and a kill cut short
        (see the module doc); a snapshot that still has a (v2) clone stays."""
        rbd = rbd_module()
        for s in img.list_snaps():
            if s.get('namespace', 0) != TRASH_NAMESPACE:
                continue
            original = (s.get('trash') or {}).get('original_name', '?')
            try:
                img.remove_snap_by_id(s['id'])
                self.ctx.log.info('image %s: finished the interrupted removal of snapshot '
                                  '%s (id %s, in librbd\'s trash)' % (image, original, s['id']))
            except rbd.ImageNotFound:
                pass
            except (rbd.Error, AttributeError) as e:
                self.ctx.log.error('image %s: snapshot %s (id %s) stays in librbd\'s trash: '
                                   '%s' % (image, original, s['id'], e))

    def remove_image(self, name, ignore=None):
        """Remove an image, then collect what it hung from (``ignore``: the intent of
        the command doing this, see ``Index.in_flight``)."""
        rbd = rbd_module()
        parent = None
        try:
            with self.images.open(name, read_only=True) as img:
                try:
                    spec = img.get_parent_image_spec()
                    if spec.get('pool_name') == self.ctx.pool and \
                            spec.get('pool_namespace', '') == self.ctx.namespace:
                        parent = spec['image_name']
                except rbd.ImageNotFound:
                    pass
                watched = bool(list(img.watchers_list()))
        except SRError:
            # listed but unopenable: what a remove or create killed inside librbd leaves;
            # librbd's remove finishes it
            try:
                rbd.RBD().remove(self.ctx.io, name)
            except rbd.Error:
                pass
            self.index.update(remove=(L.RETAINED_PREFIX + name,))
            return
        if watched:
            # librbd's remove waits for a dead lock owner's watch to time out
            self.watchers.evict_dead(name)
        for attempt in range(REMOVE_TRIES):
            try:
                rbd.RBD().remove(self.ctx.io, name)
                break
            except rbd.ImageNotFound:
                break
            except rbd.ImageBusy:
                # a watcher that just closed is still registered for a moment;
                # one of a killed driver process of this host is evicted
                self.watchers.evict_dead(name)
                if attempt == REMOVE_TRIES - 1:
                    raise SRError('VDIInUse', 'image %s is still open somewhere' % name)
                time.sleep(0.25)
        self.index.update(remove=(L.RETAINED_PREFIX + name,))
        try:
            self.ctx.io.remove_object(L.LEASE_PREFIX + name)
        except Exception:
            pass
        if parent:
            self.gc_image(parent, ignore)

    def gc_image(self, name, ignore=None):
        """Drop unused snapshots of ``name``; remove it when it holds no VDI of its
        own (the key ``srkit.vdi.<name>``) and nothing depends on it any more."""
        rbd = rbd_module()
        try:
            with self.images.open(name) as img:
                self.finish_trashed_snaps(img, name)
                for snap in user_snaps(img):
                    self.drop_snap_if_unused(img, name, snap['name'], ignore)
                md = dict(img.metadata_list())
                if L.META_VDI_PREFIX + name in md or list(img.list_snaps()):
                    return
        except SRError:
            return
        except rbd.Error as e:
            self.ctx.log.error('gc of %s: %s' % (name, e))
            return
        if self.index.in_flight(name, ignore):
            return
        self.ctx.log.info('removing image %s: it holds no VDI and nothing depends on it'
                          % name)
        self.remove_image(name, ignore)

    def purge_image(self, name):
        """Remove an image and all its snapshots (sr_delete of an SR without VDIs)."""
        rbd = rbd_module()
        try:
            with self.images.open(name) as img:
                self.finish_trashed_snaps(img, name)
                for snap in user_snaps(img):
                    with self.images.open(name, read_only=True, snapshot=snap['name']) as s:
                        if list(s.list_children2()):
                            continue  # goes when its children go (next round)
                    if img.is_protected_snap(snap['name']):
                        img.unprotect_snap(snap['name'])
                    img.remove_snap(snap['name'])
            rbd.RBD().remove(self.ctx.io, name)
        except (rbd.ImageBusy, rbd.ImageHasSnapshots):
            pass
        except SRError:
            pass
