"""Rolling the commands that died forward or back, from their intents (index.py),
on the SR master at sr_scan: each command's rule is in docs/ceph.md, "Crash safety".
"""

from framework import crash
from framework.errors import SRError
from drivers.ceph import layout as L


class Recovery(object):
    """The intents of dead commands (``ctx``: SRContext; ``index``: Index; ``images``:
    Images; ``reclaim``: Reclaim, which finishes deletes and collects images;
    ``watchers``: Watchers, to refuse a rollback of an image in use). Public:
    ``run()``, ``recover_all(intents)``."""

    def __init__(self, ctx, index, images, reclaim, watchers):
        self.ctx = ctx
        self.index = index
        self.images = images
        self.reclaim = reclaim
        self.watchers = watchers

    def run(self):
        """Recover every intent of the index this process may recover now."""
        intents = self.index.intents(self.index.read())
        if intents:
            self.recover_all(intents)

    def recover_all(self, intents):
        """Roll each intent of ``intents`` ({uuid: intent}) this process may recover;
        one that fails is logged and left for the next scan. Returns how many went."""
        done = 0
        for uuid, intent in sorted(intents.items()):
            if not self.index.recoverable(intent):
                continue
            intent.setdefault('uuid', uuid)
            try:
                self._recover(intent)
                done += 1
            except SRError as e:
                self.ctx.log.error('recovering %s of %s: %s (left for the next scan)'
                                   % (intent.get('op'), uuid, e))
        return done

    def _recover(self, intent):
        """Roll the command ``intent`` describes forward or back (docs/ceph.md)."""
        op, uuid = intent.get('op'), intent['uuid']
        self.ctx.log.info('recovering an interrupted %s of VDI %s (process %s on %s)'
                          % (op, uuid, intent.get('pid'), intent.get('host')))
        crash.point('rbd.scan.before-recover')
        if op == 'create':
            self._undo_new_image(intent)
        elif op == 'snapshot':
            self._undo_snapshot(intent)
        elif op == 'clone':
            if self.index.entry(uuid) is None:
                self._undo_new_image(intent)
            self.reclaim.gc_image(intent['image'], ignore=uuid)
        elif op == 'destroy':
            if self._has_key(intent['image'], uuid):
                self.ctx.log.info('the delete of %s had not started: VDI kept' % uuid)
            else:
                self.reclaim.finish_delete(intent)
                return
        elif op in ('resize', 'revert'):
            self._finish_size_change(intent)
            return
        self.index.update(remove=(L.PENDING_PREFIX + uuid,))

    def _has_key(self, image, uuid):
        try:
            with self.images.open(image, read_only=True) as img:
                img.metadata_get(L.META_VDI_PREFIX + uuid)
                return True
        except (KeyError, SRError):
            return False

    def _undo_new_image(self, intent):
        """Remove the image a killed create/clone made (a new image has no snapshots)."""
        name = intent['uuid']
        try:
            with self.images.open(name, read_only=True) as img:
                if list(img.list_snaps()):
                    self.ctx.log.error('image %s has snapshots; not removing it' % name)
                    return
        except SRError:
            pass   # never made, or made half by librbd: remove_image handles both
        self.reclaim.remove_image(name, ignore=name)

    def _undo_snapshot(self, intent):
        image, snap = intent['image'], intent.get('snap') or intent['uuid']
        try:
            with self.images.open(image) as img:
                L.forget_record(img, snap)
                self.reclaim.finish_trashed_snaps(img, image)   # an undo killed inside librbd
                self.reclaim.drop_snap_if_unused(img, image, snap, ignore=intent['uuid'])
        except SRError:
            pass

    def _finish_size_change(self, intent):
        """Resize/revert: redo the rollback if one was interrupted, then record the
        size the image really has (image metadata, index) and drop the intent."""
        uuid = intent['uuid']
        entry = self.index.entry(uuid)
        if entry is None:
            self.index.update(remove=(L.PENDING_PREFIX + uuid,))
            return
        with self.images.open(entry.image) as img:
            if intent.get('op') == 'revert' and intent.get('snap'):
                if intent['snap'] in set(s['name'] for s in img.list_snaps()):
                    self.watchers.refuse_if_open(entry.image, 'finish the revert of %s' % uuid)
                    img.rollback_to_snap(intent['snap'])
            entry.size = img.size()
            self.index.put(entry, image=img, done=intent.get('op'))
