"""Roll half-done work forward or back, and drop what no VDI needs any more.

Every rule keys on names the driver controls (layout.py). Two sets:

``settle`` (from ``list()``, so a scan never misses a VDI; revert holds the SR lock,
as does every caller of ``list()``):
- ``revert-<uuid>`` zvol: if ``<uuid>`` still exists the revert had not switched
  yet -> destroy it (roll back); else rename it to ``<uuid>`` (roll forward).

``collect`` (``collect_garbage`` at sr_scan, and after destroy/revert):
- ``@x-<time>-*`` temporary snapshots older than ``crash.grace()`` -> destroy
  (extents/changed_extents take them without the SR lock: a young one may be in use).
- ``@base-*`` and ``@retired-*`` snapshots without clones -> destroy.
- ``retired-*`` zvols without snapshots -> destroy (which may free the origin
  snapshot of another retired zvol: repeat until nothing changes).
"""

import time

from drivers.zfs import layout as L

MAX_PASSES = 8


def plan(rows, collect=True, now=None, grace=0.0):
    """[(action, name[, new_name])] for one pass over a listing."""
    actions = []
    now = time.time() if now is None else now
    names = set(r.name for r in rows)
    snaps_of = {}
    for r in rows:
        if r.type == 'snapshot':
            snaps_of.setdefault(r.dataset, []).append(r)
    for r in rows:
        leaf = r.leaf
        if r.type == 'volume' and leaf.startswith(L.REVERT):
            target = r.name[:-len(leaf)] + leaf[len(L.REVERT):]
            if target in names:
                actions.append(('destroy', r.name))
            else:
                actions.append(('rename', r.name, target))
        elif r.type == 'snapshot' and collect:
            if leaf.startswith(L.TEMP) and now - L.temp_time(leaf) >= grace:
                actions.append(('destroy', r.name))
            elif leaf.startswith((L.BASE, L.RETIRED)) and not r.clones:
                actions.append(('destroy', r.name))
    if not collect:
        return actions
    for r in rows:
        if r.type == 'volume' and r.leaf.startswith(L.RETIRED):
            left = [s for s in snaps_of.get(r.name, ())
                    if ('destroy', s.name) not in actions]
            if not left:
                actions.append(('destroy', r.name))
    # snapshots before the datasets they belong to
    actions.sort(key=lambda a: (a[0] != 'destroy' or '@' not in a[1]))
    return actions


def run(zfs, sr_ds, rows, log, collect=True):
    """Apply plans until the listing is clean; return the final rows."""
    from framework import crash
    grace = crash.grace()
    for _ in range(MAX_PASSES):
        actions = plan(rows, collect, grace=grace)
        if not actions:
            return rows
        for action in actions:
            log.info('repair: %s' % ' '.join(action))
            if action[0] == 'destroy':
                zfs.destroy(action[1])
            else:
                zfs.rename(action[1], action[2])
        rows = zfs.list_tree(sr_ds)
    return rows
