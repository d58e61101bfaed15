"""Issue 16, finding 2: a fresh-pool sr_scan rebuilding a lost index must never die of
a signal, even when librbd crashes while it reads the images (drivers/ceph/inspect.py).
bench/rbd_scan_abort.py is the long version of the parallel run."""
import os
import sys

import pytest

from simulator.errors import XapiError

MiB = 1 << 20
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "bench"))


def _drop_index(sr):
    import rados
    keys = tuple(k for k in sr.index() if not k.startswith("sr."))
    with rados.WriteOpCtx() as op:
        sr.io.remove_omap_keys(op, keys)
        sr.io.operate_write_op(op, "srkit.sr")


def test_a_crash_while_reading_unknown_images_is_a_fault_not_a_dead_scan(
        pool, sr, device_config, tmp_path):
    """The reading runs in a child: a crash there (here: the child SIGKILLed at each
    image) makes the scan fail with a fault after its tries, changes nothing in xapi,
    and the next scan rebuilds the index."""
    from simulator import Pool
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="A")
    pool.vdi_snapshot(v)
    pool.vdi_clone(v)
    p2 = Pool(str(tmp_path / "pool2"), hosts=1)
    try:
        ref = p2.sr_introduce(sr.uuid, "rbd", name_label="adopted", shared=True)
        p2.pbd_plug(p2.pbd_create(p2.master, ref, device_config))
        p2.sr_scan(ref)
        known = sorted(r["uuid"] for r in p2.records("VDI"))
        assert len(known) == 3
        _drop_index(sr)
        p2.config["extra_env"] = {"SRKIT_CRASH_AT": "rbd.inspect.image"}
        with pytest.raises(XapiError) as e:
            p2.sr_scan(ref)
        assert p2.last_call.returncode == 0, p2.last_call.stdout   # a reply, not a signal
        assert "received signal" not in str(e.value)
        assert "killed by signal 9" in str(e.value)
        assert sorted(r["uuid"] for r in p2.records("VDI")) == known   # nothing forgotten
        p2.config["extra_env"] = {}
        p2.sr_scan(ref)
        assert sorted(r["uuid"] for r in p2.records("VDI")) == known
        assert sorted(k[4:] for k in sr.index() if k.startswith("vdi.")) == known
    finally:
        p2.close()


def test_fresh_pool_scans_in_parallel_under_load_never_die_of_a_signal(ceph_env, tmp_path):
    """Three fresh pools rebuild the index of one SR at once, while its own pool keeps
    creating, snapshotting, cloning and deleting VDIs and spinners load every core."""
    import rbd_scan_abort
    result = rbd_scan_abort.run(str(tmp_path), scanners=3, rounds=2, spinners=2)
    assert result["signal_deaths"] == [], result
    assert result["scans"] == 6, result
