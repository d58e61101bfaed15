"""`srkit demo`: the main job on the embedded `local` backend, end to end.

A simulated host runs sm_drivers/LocalSR exactly as xapi would: create an SR in a
temp dir, create VDIs, write through the attached loop devices, snapshot, clone,
resize, read everything back, lose the SR from xapi and bring it back with a
scan, then clean up. Every step is a real driver invocation.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

from simulator.pool import Pool

MiB = 1024 * 1024
BLOCK = 4096


def _block(text):
    return text.encode().ljust(BLOCK, b'\0')


def _write(pool, vdi, offset, text):
    device = pool.vdi_attach(vdi, writable=True)['params']
    try:
        fd = os.open(device, os.O_WRONLY)
        try:
            os.pwrite(fd, _block(text), offset)
            os.fsync(fd)
        finally:
            os.close(fd)
    finally:
        pool.vdi_detach(vdi)
    return device


def _read(pool, vdi, offset):
    device = pool.vdi_attach(vdi, writable=False)['params']
    try:
        fd = os.open(device, os.O_RDONLY)
        try:
            return os.pread(fd, BLOCK, offset).rstrip(b'\0').decode(errors='replace')
        finally:
            os.close(fd)
    finally:
        pool.vdi_detach(vdi)


class Steps:
    def __init__(self, out):
        self.out = out
        self.n = 0

    def __call__(self, text):
        self.n += 1
        self.start = time.time()
        self.out.write('%2d. %s' % (self.n, text))
        self.out.flush()

    def done(self, note=''):
        self.out.write(' ... ok (%.0f ms)%s\n' % ((time.time() - self.start) * 1000,
                                                 ' ' + note if note else ''))


def run(workdir, out=sys.stdout):
    pool = Pool(os.path.join(workdir, 'pool'))
    storage = os.path.join(workdir, 'storage')
    os.makedirs(storage)
    step = Steps(out)
    failures = []

    def expect(what, got, wanted):
        if got != wanted:
            failures.append('%s: read %r, expected %r' % (what, got, wanted))

    step('create a `local` SR in %s' % storage)
    sr = pool.sr_create('local', {'location': storage}, name_label='demo SR')
    step.done('uuid %s' % pool.sr_record(sr)['uuid'])

    step('create VDIs "web" (64 MiB) and "db" (32 MiB)')
    web = pool.vdi_create(sr, 64 * MiB, name_label='web', name_description='web server disk')
    db = pool.vdi_create(sr, 32 * MiB, name_label='db', name_description='database disk')
    step.done()

    step('write through the attached devices')
    device = _write(pool, web, 0, 'web v1')
    _write(pool, web, 40 * MiB, 'web v1 at 40 MiB')
    _write(pool, db, 0, 'db v1')
    step.done('(%s)' % device)

    step('snapshot "web"')
    snap = pool.vdi_snapshot(web)
    step.done()

    step('overwrite "web" after the snapshot')
    _write(pool, web, 0, 'web v2')
    step.done()

    step('clone the snapshot into "web-test"')
    clone = pool.vdi_clone(snap)
    # like `xe vdi-param-set name-label=…`: that changes xapi's record only; the next
    # sr-scan copies names to the backend, where they outlive xapi's database
    pool.db.update('VDI', clone, name_label='web-test')
    pool.sr_scan(sr)
    _write(pool, clone, 0, 'web-test')
    step.done()

    step('grow "db" to 128 MiB')
    size = pool.vdi_resize(db, 128 * MiB)
    _write(pool, db, 100 * MiB, 'db beyond the old end')
    step.done('(now %d MiB)' % (size // MiB))

    step('read everything back')
    expect('web', _read(pool, web, 0), 'web v2')
    expect('web @40MiB', _read(pool, web, 40 * MiB), 'web v1 at 40 MiB')
    expect('snapshot', _read(pool, snap, 0), 'web v1')
    expect('snapshot @40MiB', _read(pool, snap, 40 * MiB), 'web v1 at 40 MiB')
    expect('clone', _read(pool, clone, 0), 'web-test')
    expect('db', _read(pool, db, 0), 'db v1')
    expect('db @100MiB', _read(pool, db, 100 * MiB), 'db beyond the old end')
    step.done()

    step('forget the SR in xapi, re-introduce it and scan')
    sr_uuid = pool.sr_record(sr)['uuid']
    for pbd in pool.sr_record(sr)['PBDs']:
        pool.pbd_unplug(pbd)
    pool.sr_forget(sr)
    sr = pool.sr_introduce(sr_uuid, 'local', name_label='demo SR (re-introduced)')
    pool.pbd_plug(pool.pbd_create(pool.master, sr, {'location': storage}))
    pool.sr_scan(sr)
    vdis = sorted((pool.vdi_record(v) for v in pool.sr_record(sr)['VDIs']),
                  key=lambda r: (r['is_a_snapshot'], r['name_label']))
    names = sorted(r['name_label'] for r in vdis)
    expect('names after scan', names, ['db', 'web', 'web', 'web-test'])
    step.done('(%d VDIs back)' % len(vdis))

    out.write('\n%-38s %-10s %-9s %-8s %-9s %-4s %s\n' % (
        'VDI uuid', 'name', 'virtual', 'on disk', 'snapshot', 'ro', 'first block'))
    for rec in vdis:
        ref = pool.by_uuid('VDI', rec['uuid'])
        parent = pool.vdi_record(rec['snapshot_of'])['uuid'][:8] \
            if rec['snapshot_of'] not in ('', 'OpaqueRef:NULL') else ''
        out.write('%-38s %-10s %6d MiB %5d KiB %-9s %-4s %s\n' % (
            rec['uuid'], rec['name_label'], int(rec['virtual_size']) // MiB,
            int(rec['physical_utilisation']) // 1024, parent and 'of ' + parent,
            'yes' if rec['read_only'] else 'no', _read(pool, ref, 0)))

    step('clean up: destroy VDIs and the SR')
    for rec in sorted(vdis, key=lambda r: not r['is_a_snapshot']):
        pool.vdi_destroy(pool.by_uuid('VDI', rec['uuid']))
    for pbd in pool.sr_record(sr)['PBDs']:
        pool.pbd_unplug(pbd)
    pool.sr_destroy(sr)
    left = os.listdir(storage)
    if left:
        failures.append('storage not empty after sr-destroy: %s' % left)
    step.done()
    pool.close()
    return failures


def main(argv=None):
    parser = argparse.ArgumentParser(prog='srkit demo', description=__doc__.splitlines()[0])
    parser.add_argument('--keep', action='store_true', help='keep the temp dir (pool + SMlog)')
    opts = parser.parse_args(argv)
    if os.geteuid() != 0:
        sys.stderr.write('srkit demo: needs root (it attaches loop devices)\n')
        return 1
    workdir = tempfile.mkdtemp(prefix='srkit-demo-')
    print('srkit demo: a simulated XCP-ng host running sm_drivers/LocalSR in %s\n' % workdir)
    try:
        failures = run(workdir)
    finally:
        if not opts.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print('\nFAILED:\n  ' + '\n  '.join(failures))
        return 1
    print('\nAll data read back as written; every VDI came back with its name after the '
          'SR was forgotten.%s' % ('' if not opts.keep else ' Kept: %s' % workdir))
    return 0


if __name__ == '__main__':
    sys.exit(main())
