"""What the crash soak (bench/crash_soak.py, issue 16) found on rbd.

A driver process killed while it held an image open
read-write, after its command had cleared its intent (no recovery step looks at
that image), left its watch on the image for the OSD's ~30 s watch timeout, past
the scans that should leave nothing of a killed command behind."""
import json
import os
import signal
import subprocess

from simulator.testkit import wait_until

MiB = 1024 * 1024
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

HOLDER = """
import json, sys, time
sys.path.insert(0, %r)
from drivers.ceph.driver import RBDDriver
from simulator.testkit import driver_context
args = json.loads(sys.argv[1])
d = RBDDriver(args['sr'], args['dc'], driver_context(args['state']))
img = d.images.open(args['image'])   # a read-write open, as vdi_snapshot makes
print('open', flush=True)
time.sleep(600)
"""


def test_scan_blocklists_the_watch_a_killed_process_left_without_an_intent(pool, sr,
                                                                            device_config):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="held")
    uuid = sr.uuid_of(v)
    state = os.path.join(pool.host_dirs(pool.master)["state"], sr.uuid)
    args = {'sr': sr.uuid, 'dc': dict(device_config, SRmaster='true'), 'state': state,
            'image': uuid}
    holder = subprocess.Popen(['/usr/bin/python3', '-c', HOLDER % REPO, json.dumps(args)],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline().strip() == b'open'
        with sr.image(uuid, read_only=True) as img:
            assert len(list(img.watchers_list())) == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    pool.sr_scan(sr.ref)

    def watchers():
        with sr.image(uuid, read_only=True) as img:
            return list(img.watchers_list())
    # the blocklist reaches the OSD with the next osdmap: a moment, never the 30 s
    assert wait_until(lambda: watchers() == [], timeout=5), watchers()
    held = [n for n in os.listdir(os.path.join(state, 'clients'))
            if uuid in open(os.path.join(state, 'clients', n)).read()]
    assert held == []   # the killed holder's record went with its watch
    pool.vdi_destroy(v)
    assert uuid not in sr.images()


def test_a_snapshot_librbd_made_half_is_removed_by_the_scan(pool, sr, cluster):
    """Soak finding: vdi_snapshot killed inside librbd's create_snap, after the
    snapshot was in the image header but before its object map was written. librbd
    then cannot open the snapshot (ENOENT), which the recovery took for "no such
    snapshot": the intent went and the snapshot stayed, with no VDI, for good."""
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="base")
    base = sr.uuid_of(v)
    env = pool.config.setdefault("extra_env", {})
    env["SRKIT_CRASH_AT"] = "rbd.snapshot.after-snap"
    try:
        try:
            pool.vdi_snapshot(v)
        except Exception:
            pass
    finally:
        env.pop("SRKIT_CRASH_AT", None)
    assert pool.last_call.returncode == -9
    [snap] = sr.snaps(base)
    with sr.image(base, read_only=True) as img:
        image_id = img.id()
        snap_id = [s["id"] for s in img.list_snaps() if s["name"] == snap][0]
    io = cluster.open_ioctx(sr.pool_name)
    try:
        io.set_namespace(sr.uuid)
        io.remove_object("rbd_object_map.%s.%016x" % (image_id, snap_id))
    finally:
        io.close()
    pool.sr_scan(sr.ref)
    assert sr.snaps(base) == []
    assert [r["uuid"] for r in pool.records("VDI")] == [base]
    assert not [k for k in sr.index() if k.startswith("pending.")]
