"""sr_scan of an RBD SR: the index checked against the images, intents of dead
commands rolled forward or back, orphans collected (on the SR master only).

Identity never comes from metadata librbd may have copied: a clone inherits all
of its parent's image metadata, so a ``srkit.vdi.<uuid>`` key on an image is
believed only when the image is the one that VDI names:

* a VDI ``U`` of kind image lives on the image named ``U``;
* a snapshot VDI ``S`` lives on the image that has an RBD snapshot named ``S``
  (snapshot names are uuids: there is at most one).

Every other ``srkit.*`` key on an image is inherited garbage and is ignored.
"""

from framework import crash
from framework.errors import SRError
from drivers.ceph import layout as L
from drivers.ceph.connection import ceph_error, mapped, rbd_module
from drivers.ceph.reclaim import user_snaps


class ScanMixin(object):
    @mapped('SRScan')
    def collect_garbage(self):
        """sr_scan on the master, before list(): roll the commands that died forward
        or back (their intents); list() then collects orphan images."""
        if not self.ctx.is_master:
            return
        self.clean_datapaths()   # attach.py: kernel devices killed commands left mapped
        intents = self._intents(self._omap())
        if intents:
            self._recover_all(intents)
        self._prune_clients()

    @mapped('SRScan')
    def list(self):
        rbd = rbd_module()
        index = self._omap()
        intents = self._intents(index)
        try:
            images = set(rbd.RBD().list(self.io))
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
        return dict((u, self._volume(e, used.get(u, 0))) for u, e in entries.items())

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
        founds = read_images(self, unknown) if unknown else {}
        for name in unknown:
            found = founds.get(name)
            if found == 'broken':
                if self.ctx.is_master:
                    self.ctx.log.info('image %s is listed but cannot be opened (a create or '
                                      'remove killed inside librbd): removing it' % name)
                    self._remove_image(name)
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
            elif self.ctx.is_master and age > self._grace():
                self.ctx.log.info('image %s holds no VDI and nothing needs it: removing it'
                                  % name)
                self._gc_image(name)
        if values or remove:
            self._index_set(values, remove)

    def _read_image(self, name):
        """([Entry] the image holds, needed by a dependant?, age in seconds); 'broken'
        for an image listed but gone or unopenable; None on another error."""
        import datetime
        rbd = rbd_module()
        try:
            with self._image(name, read_only=True) as img:
                md = dict(img.metadata_list())
                size = img.size()
                # a snapshot in librbd's trash is a removal cut short (reclaim.py): no VDI
                snaps = dict((s['name'], s['size']) for s in user_snaps(img))
                children = set()
                for snap in snaps:
                    with self._image(name, read_only=True, snapshot=snap) as s:
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

    # --- intents of commands that died --------------------------------------------------
    def _recover_all(self, intents):
        done = 0
        for uuid, intent in sorted(intents.items()):
            if not self._recoverable(intent):
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
            if self._entry(uuid) is None:
                self._undo_new_image(intent)
            self._gc_image(intent['image'], ignore=uuid)
        elif op == 'destroy':
            if self._has_key(intent['image'], uuid):
                self.ctx.log.info('the delete of %s had not started: VDI kept' % uuid)
            else:
                self._finish_delete(intent)
                return
        elif op in ('resize', 'revert'):
            self._finish_size_change(intent)
            return
        self._index_set(remove=(L.PENDING_PREFIX + uuid,))

    def _has_key(self, image, uuid):
        try:
            with self._image(image, read_only=True) as img:
                img.metadata_get(L.META_VDI_PREFIX + uuid)
                return True
        except (KeyError, SRError):
            return False

    def _undo_new_image(self, intent):
        """Remove the image a killed create/clone made (a new image has no snapshots)."""
        name = intent['uuid']
        try:
            with self._image(name, read_only=True) as img:
                if list(img.list_snaps()):
                    self.ctx.log.error('image %s has snapshots; not removing it' % name)
                    return
        except SRError:
            pass   # never made, or made half by librbd: _remove_image handles both
        self._remove_image(name, ignore=name)

    def _undo_snapshot(self, intent):
        image, snap = intent['image'], intent.get('snap') or intent['uuid']
        try:
            with self._image(image) as img:
                try:
                    img.metadata_remove(L.META_VDI_PREFIX + snap)
                except KeyError:
                    pass
                self._finish_trashed_snaps(img, image)   # an undo killed inside librbd
                self._drop_snap_if_unused(img, image, snap, ignore=intent['uuid'])
        except SRError:
            pass

    def _finish_size_change(self, intent):
        """Resize/revert: redo the rollback if one was interrupted, then record the
        size the image really has (image metadata, index) and drop the intent."""
        uuid = intent['uuid']
        entry = self._entry(uuid)
        if entry is None:
            self._index_set(remove=(L.PENDING_PREFIX + uuid,))
            return
        with self._image(entry.image) as img:
            if intent.get('op') == 'revert' and intent.get('snap'):
                if intent['snap'] in set(s['name'] for s in img.list_snaps()):
                    self._refuse_if_open(entry.image, 'finish the revert of %s' % uuid)
                    img.rollback_to_snap(intent['snap'])
            entry.size = img.size()
            self._put(entry, image=img, done=intent.get('op'))
