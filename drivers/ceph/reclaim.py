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
"""

import time

from framework import crash
from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import rbd_module

REMOVE_TRIES = 20


class ReclaimMixin(object):
    def _finish_delete(self, intent):
        """Steps 2-5 of a delete; safe to repeat."""
        rbd = rbd_module()
        uuid, image, snap = intent['uuid'], intent['image'], intent.get('snap') or ''
        keep = None
        try:
            with self._image(image) as img:
                try:
                    img.metadata_remove(L.META_VDI_PREFIX + uuid)
                except KeyError:
                    pass
                crash.point('rbd.destroy.after-meta')
                self._index_set(remove=(L.VDI_PREFIX + uuid, L.USED_PREFIX + uuid))
                crash.point('rbd.destroy.after-index')
                if snap:
                    self._drop_snap_if_unused(img, image, snap, ignore=uuid)
                else:
                    for s in list(img.list_snaps()):
                        if s['name'].startswith(L.CLONE_SNAP_PREFIX):
                            self._drop_snap_if_unused(img, image, s['name'], ignore=uuid)
                    keep = [s['name'] for s in img.list_snaps()]
                    if keep:
                        self._index_set({L.RETAINED_PREFIX + image: ''})
                        self.ctx.log.info('VDI %s deleted; image retained for %d dependant '
                                          'snapshot(s)' % (uuid, len(keep)))
        except SRError as e:
            if e.name != 'VDIMissing':
                raise
            self._index_set(remove=(L.VDI_PREFIX + uuid, L.USED_PREFIX + uuid))
            if not snap:
                keep = []   # a half-removed image is finished below
        except rbd.ImageNotFound:
            pass
        if snap:
            self._gc_image(image, ignore=uuid)
        elif keep == []:
            self._remove_image(image, ignore=uuid)
        crash.point('rbd.destroy.after-reclaim')
        self._index_set(remove=(L.PENDING_PREFIX + uuid,))

    def _in_flight(self, uuid, ignore=None):
        """A live command (an intent not ours to recover) is building VDI ``uuid``."""
        if not uuid or uuid == ignore:
            return False
        text = self._omap([L.PENDING_PREFIX + uuid]).get(L.PENDING_PREFIX + uuid)
        if text is None:
            return False
        import json
        try:
            return not self._recoverable(json.loads(text))
        except ValueError:
            return False

    def _drop_snap_if_unused(self, img, image, snap, ignore=None):
        """Remove a snapshot nobody needs: not a VDI, no clone children, not being
        made by a command in flight."""
        rbd = rbd_module()
        try:
            img.metadata_get(L.META_VDI_PREFIX + snap)
            return False  # still a VDI
        except KeyError:
            pass
        owner = snap[len(L.CLONE_SNAP_PREFIX):] if snap.startswith(L.CLONE_SNAP_PREFIX) else snap
        if self._in_flight(owner, ignore):
            return False
        try:
            with self._image(image, read_only=True, snapshot=snap) as s:
                if list(s.list_children2()):
                    return False
        except rbd.ImageNotFound:
            return True
        if img.is_protected_snap(snap):
            img.unprotect_snap(snap)
        img.remove_snap(snap)
        return True

    def _remove_image(self, name, ignore=None):
        """Remove an image, then collect what it hung from (``ignore``: the intent of
        the command doing this, see ``_in_flight``)."""
        rbd = rbd_module()
        parent = None
        try:
            with self._image(name, read_only=True) as img:
                try:
                    spec = img.get_parent_image_spec()
                    if spec.get('pool_name') == self.pool and \
                            spec.get('pool_namespace', '') == self.namespace:
                        parent = spec['image_name']
                except rbd.ImageNotFound:
                    pass
                watched = bool(list(img.watchers_list()))
        except SRError:
            # listed but unopenable: what a remove or create killed inside librbd leaves;
            # librbd's remove finishes it
            try:
                rbd.RBD().remove(self.io, name)
            except rbd.Error:
                pass
            self._index_set(remove=(L.RETAINED_PREFIX + name,))
            return
        if watched:
            # librbd's remove waits for a dead lock owner's watch to time out
            self._evict_dead_watchers(name)
        for attempt in range(REMOVE_TRIES):
            try:
                rbd.RBD().remove(self.io, name)
                break
            except rbd.ImageNotFound:
                break
            except rbd.ImageBusy:
                # a watcher that just closed is still registered for a moment;
                # one of a killed driver process of this host is evicted
                self._evict_dead_watchers(name)
                if attempt == REMOVE_TRIES - 1:
                    raise SRError('VDIInUse', 'image %s is still open somewhere' % name)
                time.sleep(0.25)
        self._index_set(remove=(L.RETAINED_PREFIX + name,))
        try:
            self.io.remove_object(L.LEASE_PREFIX + name)
        except Exception:
            pass
        if parent:
            self._gc_image(parent, ignore)

    def _gc_image(self, name, ignore=None):
        """Drop unused snapshots of ``name``; remove it when it holds no VDI of its
        own (the key ``srkit.vdi.<name>``) and nothing depends on it any more."""
        rbd = rbd_module()
        try:
            with self._image(name) as img:
                for snap in list(img.list_snaps()):
                    self._drop_snap_if_unused(img, name, snap['name'], ignore)
                md = dict(img.metadata_list())
                if L.META_VDI_PREFIX + name in md or list(img.list_snaps()):
                    return
        except SRError:
            return
        except rbd.Error as e:
            self.ctx.log.error('gc of %s: %s' % (name, e))
            return
        if self._in_flight(name, ignore):
            return
        self.ctx.log.info('removing image %s: it holds no VDI and nothing depends on it'
                          % name)
        self._remove_image(name, ignore)

    def _purge_image(self, name):
        """Remove an image and all its snapshots (sr_delete of an SR without VDIs)."""
        rbd = rbd_module()
        try:
            with self._image(name) as img:
                for snap in list(img.list_snaps()):
                    with self._image(name, read_only=True, snapshot=snap['name']) as s:
                        if list(s.list_children2()):
                            continue  # goes when its children go (next round)
                    if img.is_protected_snap(snap['name']):
                        img.unprotect_snap(snap['name'])
                    img.remove_snap(snap['name'])
            rbd.RBD().remove(self.io, name)
        except (rbd.ImageBusy, rbd.ImageHasSnapshots):
            pass
        except SRError:
            pass
