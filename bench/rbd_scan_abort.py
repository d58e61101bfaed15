#!/usr/bin/env python3
"""Fresh-pool scans of a plugged rbd SR, many at once, under load: no driver may die
of a signal (issue 16, finding 2: one such scan in 25 ended with SIGABRT).

    eval "$(tests/rigs/ceph.sh env DIR)"
    .venv/bin/python bench/rbd_scan_abort.py [--scanners 4] [--rounds 25] [--churn]

One simulated pool holds the SR plugged, with a chain of VDIs, snapshots and clones,
and keeps working on it (``--churn``: create, snapshot, clone, delete); each scanner
is a second, fresh pool that introduces the same SR, and for ``--rounds`` rounds
removes the SR index and rebuilds it with sr_scan. Two processes per core spin
meanwhile. Prints one JSON line: scans, signal deaths (with the driver's stderr),
other failures. tests/ceph/test_rbd_scan_abort.py runs a short version; the cause and the
fix are in drivers/ceph/inspect.py and docs/ceph.md.
"""
import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

from ceph_bench import device_config  # noqa: E402 (bench/ is sys.path[0])

MiB = 1 << 20


def _spin(stop):
    while not stop.is_set():
        pass


def drop_index(dc, sr_uuid):
    """Remove every VDI key of the SR index (as a lost index object would)."""
    import rados
    c = rados.Rados(conffile=os.environ['SRKIT_CEPH_CONF'], conf={'log_to_stderr': 'false'})
    c.connect(timeout=10)
    try:
        io = c.open_ioctx(dc['pool'])
        io.set_namespace(sr_uuid)
        with rados.ReadOpCtx() as op:
            it, _ = io.get_omap_vals(op, '', '', 100000)
            io.operate_read_op(op, 'srkit.sr')
            keys = tuple(k for k, _ in it if not k.startswith('sr.'))
        if keys:
            with rados.WriteOpCtx() as op:
                io.remove_omap_keys(op, keys)
                io.operate_write_op(op, 'srkit.sr')
        io.close()
    finally:
        c.shutdown()


def run(base, scanners=4, rounds=25, churn=True, spinners=None):
    """The scenario; returns the result dict (see the module doc)."""
    from simulator import Pool
    from simulator.errors import XapiError
    dc = device_config()
    pool1 = Pool(os.path.join(base, 'pool1'), hosts=1)
    result = {'scans': 0, 'signal_deaths': [], 'failures': [], 'churn_ops': 0}
    stop = multiprocessing.Event()
    spin = [multiprocessing.Process(target=_spin, args=(stop,))
            for _ in range(spinners if spinners is not None else 2 * os.cpu_count())]
    lock = threading.Lock()
    sr = pool1.sr_create('rbd', dc, name_label='abort', shared=True)
    sr_uuid = pool1.sr_record(sr)['uuid']
    try:
        v = pool1.vdi_create(sr, 4 * MiB, name_label='A')
        s = pool1.vdi_snapshot(v)
        c1 = pool1.vdi_clone(v)
        pool1.vdi_clone(s)
        pool1.vdi_clone(c1)

        def record(kind, e):
            with lock:
                if 'received signal' in str(e.params[:1]):
                    result['signal_deaths'].append({'while': kind, 'error': e.params[0],
                                                    'stderr': e.params[-1][-2000:]})
                else:
                    result['failures'].append('%s: %s' % (kind, e))

        def churner():
            while not stop.is_set():
                try:
                    x = pool1.vdi_create(sr, MiB, name_label='churn')
                    y = pool1.vdi_snapshot(x)
                    z = pool1.vdi_clone(y)
                    for ref in (z, y, x):
                        pool1.vdi_destroy(ref)
                    with lock:
                        result['churn_ops'] += 6
                except XapiError as e:
                    if 'received signal' in str(e.params[:1]):
                        record('churn', e)
                    # other refusals (a VDI a scanner's pool reintroduced, ...) are expected

        def scanner(i):
            p2 = Pool(os.path.join(base, 'pool2-%d' % i), hosts=1)
            try:
                ref = p2.sr_introduce(sr_uuid, 'rbd', name_label='adopted', shared=True)
                p2.pbd_plug(p2.pbd_create(p2.master, ref, dc))
                for _ in range(rounds):
                    drop_index(dc, sr_uuid)
                    try:
                        p2.sr_scan(ref)
                    except XapiError as e:
                        record('scan', e)
                    with lock:
                        result['scans'] += 1
                for pbd in p2.sr_record(ref)['PBDs']:
                    p2.pbd_unplug(pbd)
            except XapiError as e:
                record('setup', e)
            finally:
                p2.close()

        for p in spin:
            p.start()
        threads = [threading.Thread(target=scanner, args=(i,)) for i in range(scanners)]
        if churn:
            threads.append(threading.Thread(target=churner))
        t = time.time()
        for th in threads[:scanners]:
            th.start()
        if churn:
            threads[-1].start()
        for th in threads[:scanners]:
            th.join()
        stop.set()
        for th in threads[scanners:]:
            th.join()
        result['seconds'] = round(time.time() - t, 1)
    finally:
        stop.set()
        for p in spin:
            if p.is_alive():
                p.join()
        pool1.sr_scan(sr)
        for ref in pool1.sr_record(sr)['VDIs']:
            try:
                pool1.vdi_destroy(ref)
            except XapiError:
                pass
        pool1.close()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scanners', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=25)
    parser.add_argument('--no-churn', action='store_true')
    args = parser.parse_args()
    result = run(tempfile.mkdtemp(prefix='rbd-scan-abort-'), args.scanners, args.rounds,
                 not args.no_churn)
    print(json.dumps(result, sort_keys=True))
    return 1 if result['signal_deaths'] else 0


if __name__ == '__main__':
    sys.exit(main())
