"""sm_drivers/RBDSR's datapath against a real Ceph cluster: the device attach returns,
the single-writer lease across hosts and its fencing, and what detach must keep.

After each driver call the test asks Ceph itself what exists: images, snapshots,
watchers, the lease, the blocklist.
"""
import json
import os
import time

import pytest

from simulator.errors import XapiError
from simulator.testkit import driver_context, write_at

MiB = 1024 * 1024


# --- datapath ------------------------------------------------------------------------------

def _pattern(n, seed):
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


def test_attach_write_through_device_read_back_with_librbd(pool, sr):
    v = pool.vdi_create(sr.ref, 8 * MiB, name_label="io")
    uuid = sr.uuid_of(v)
    info = pool.vdi_attach(v, writable=True)
    dev = info["params"]
    assert dev.startswith("/dev/loop")
    assert info["xenstore_data"]["vdi-uuid"] == uuid
    data = _pattern(2 * MiB, 3)
    write_at(dev, 1 * MiB, data)
    assert sr.read(uuid, 1 * MiB, 2 * MiB) == data
    pool.vdi_detach(v)
    with sr.image(uuid, read_only=True) as img:
        assert list(img.watchers_list()) == []
    assert int(sr.index()["used." + uuid]) >= 2 * MiB


def _datapath_record(pool, host, uuid):
    """The driver's record of the attachment of VDI ``uuid`` on ``host`` (its daemon)."""
    import glob
    found = glob.glob(os.path.join(pool.host_dirs(host)["state"], "**", "dp.%s.json" % uuid),
                      recursive=True)
    assert len(found) == 1, found
    with open(found[0]) as f:
        return json.load(f)


def test_detach_lets_go_of_the_image_even_when_its_daemon_must_be_killed(pool, sr):
    """Issue 16, finding 1: a daemon too slow to exit (a loaded host; here: stopped) is
    killed by the detach, and its watch would stay until the OSD times it out (~30 s),
    so a vdi_delete right after failed with VDI_IN_USE. Detach returns only once the
    image has no watcher of its datapath; the delete that follows works at once."""
    import signal
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="slow-daemon")
    uuid = sr.uuid_of(v)
    dev = pool.vdi_attach(v, writable=True)["params"]
    write_at(dev, MiB, b"K" * 4096)
    record = _datapath_record(pool, pool.master, uuid)
    assert record["pid"] and record["clients"], record
    os.kill(record["pid"], signal.SIGSTOP)
    try:
        pool.vdi_detach(v)
    finally:
        try:
            os.kill(record["pid"], signal.SIGCONT)
        except OSError:
            pass
    with sr.image(uuid, read_only=True) as img:
        assert list(img.watchers_list()) == []
    assert sr.read(uuid, MiB, 4096) == b"K" * 4096
    pool.vdi_destroy(v)
    assert uuid not in sr.images()


def _spin(stop):
    while not stop.is_set():
        pass


def test_delete_right_after_detach_under_load(pool, sr):
    """Issue 16, finding 1, as the conformance check met it: attach, write, detach, a
    read-only attach on the other host, detach, then vdi_delete at once, repeated
    while the test itself keeps both cores busy and other VDIs come and go."""
    import multiprocessing
    import threading
    stop = multiprocessing.Event()
    spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(2)]
    errors = []

    def churn():
        while not stop.is_set():
            try:
                pool.vdi_destroy(pool.vdi_create(sr.ref, MiB, name_label="churn"))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append("churn: %s" % e)
                return
    churner = threading.Thread(target=churn)
    for p in spinners:
        p.start()
    churner.start()
    try:
        for i in range(3):
            v = pool.vdi_create(sr.ref, 4 * MiB, name_label="now-%d" % i)
            uuid = sr.uuid_of(v)
            write_at(pool.vdi_attach(v, writable=True)["params"], MiB, b"%d" % i * 4096)
            pool.vdi_detach(v)
            dev = pool.vdi_attach(v, host=pool.hosts[1], writable=False)["params"]
            with open(dev, "rb") as f:
                f.seek(MiB)
                assert f.read(4096) == b"%d" % i * 4096
            pool.vdi_detach(v, host=pool.hosts[1])
            pool.vdi_destroy(v)
            assert uuid not in sr.images()
    finally:
        stop.set()
        churner.join()
        for p in spinners:
            p.join()
    assert not errors, errors


def test_attach_snapshot_read_only(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="s")
    base = sr.uuid_of(v)
    sr.write(base, 0, b"S" * 4096)
    s = pool.vdi_snapshot(v)
    sr.write(base, 0, b"T" * 4096)
    info = pool.vdi_attach(s, writable=False)
    with open(info["params"], "rb") as f:
        assert f.read(4096) == b"S" * 4096
    with open("/sys/block/%s/ro" % os.path.basename(info["params"])) as f:
        assert f.read().strip() == "1"
    assert len(sr.images()) == 2  # the snapshot is exposed through a temporary clone
    pool.vdi_detach(s)
    assert sr.images() == [base]  # which is gone after detach


def test_grow_while_attached(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="online")
    dev = pool.vdi_attach(v, writable=True)["params"]
    name = os.path.basename(dev)

    def dev_size():
        with open("/sys/block/%s/size" % name) as f:
            return int(f.read()) * 512
    assert dev_size() == 4 * MiB
    assert pool.vdi_resize(v, 12 * MiB) == 12 * MiB
    assert dev_size() == 12 * MiB
    write_at(dev, 12 * MiB - 4096, b"E" * 4096)
    assert sr.read(sr.uuid_of(v), 12 * MiB - 4096, 4096) == b"E" * 4096
    pool.vdi_detach(v)


# --- multi-host safety ----------------------------------------------------------------------

def test_second_host_activation_fails_then_fencing(pool, sr, device_config, cluster):
    from drivers.ceph import admin
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="shared")
    uuid = sr.uuid_of(v)
    host0, host1 = pool.hosts[0], pool.hosts[1]
    dev0 = pool.vdi_attach(v, host=host0, writable=True)["params"]
    write_at(dev0, 0, b"0" * 4096)
    lease = json.loads(sr.io.read("srkit.active." + uuid).decode())
    assert lease["host"] == pool.db.get("host", host0)["uuid"]
    assert lease["clients"], lease
    with pytest.raises(XapiError) as e:
        pool.vdi_attach(v, host=host1, writable=True)
    assert e.value.code == "VDI_IN_USE"
    # read-only elsewhere is fine; the lease is untouched
    assert json.loads(sr.io.read("srkit.active." + uuid).decode()) == lease
    # host0 "dies": the admin fences it
    done = admin.fence(device_config, sr.uuid, uuid, expire=600)
    assert done["blocklisted"] == [c["addr"] for c in lease["clients"]]
    import json as _json
    ret, out, _ = cluster.mon_command(_json.dumps({"prefix": "osd blocklist ls",
                                                   "format": "json"}), b"")
    listed = [b["addr"] for b in _json.JSONDecoder().raw_decode(out.decode() or "[]")[0]]
    assert all(a in listed for a in done["blocklisted"])
    with pytest.raises(Exception):
        sr.io.read("srkit.active." + uuid)
    # host1 may now activate (its attach from the failed try is reused) and write
    for dp in pool.db.find("datapath", VDI=v, host=host1):
        pool.db.delete("datapath", dp)
    dev1 = pool.vdi_attach(v, host=host1, writable=True)["params"]
    write_at(dev1, 0, b"1" * 4096)
    assert sr.read(uuid, 0, 4096) == b"1" * 4096
    # the fenced host's datapath can no longer write: its write fails or never completes
    import subprocess
    dd = subprocess.Popen(["dd", "if=/dev/zero", "of=" + dev0, "bs=4096", "count=1",
                           "oflag=direct,sync", "conv=notrunc"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rc = dd.wait(timeout=5)
    except subprocess.TimeoutExpired:
        rc = None
    assert rc != 0
    assert sr.read(uuid, 0, 4096) == b"1" * 4096
    pool.vdi_detach(v, host=host1)
    t = time.time()
    pool.vdi_detach(v, host=host0)  # the fenced datapath is torn down without hanging
    assert time.time() - t < 30
    if rc is None:
        dd.wait(timeout=10)
    assert sr.read(uuid, 0, 4096) == b"1" * 4096
    for a in done["blocklisted"]:
        cluster.mon_command(_json.dumps({"prefix": "osd blocklist", "blocklistop": "rm",
                                         "addr": a}), b"")


def test_deactivate_releases_the_lease(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="l")
    uuid = sr.uuid_of(v)
    pool.vdi_attach(v, host=pool.hosts[0], writable=True)
    pool.vdi_detach(v, host=pool.hosts[0])
    with pytest.raises(Exception):
        sr.io.read("srkit.active." + uuid)
    pool.vdi_attach(v, host=pool.hosts[1], writable=True)
    pool.vdi_detach(v, host=pool.hosts[1])


def test_delete_refused_while_active_elsewhere(pool, sr):
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="busy")
    pool.vdi_attach(v, host=pool.hosts[1], writable=True)
    with pytest.raises(XapiError) as e:
        pool.call("vdi_delete", vdi=v)
    assert e.value.code == "VDI_IN_USE"
    assert sr.uuid_of(v) in sr.images()
    pool.vdi_detach(v, host=pool.hosts[1])


def test_snapshot_deleted_while_attached_is_collected_at_detach(pool, sr, device_config):
    """xapi refuses this; the driver still never loses the attach clone's parent."""
    from drivers.ceph.driver import RBDDriver
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="v")
    base = sr.uuid_of(v)
    s = pool.vdi_snapshot(v)
    snap = sr.uuid_of(s)
    host1 = pool.hosts[1]
    pool.vdi_attach(s, host=host1, writable=False)
    pool.call("vdi_delete", vdi=s)          # on the master, while attached on host 1
    assert sr.snaps(base) == [snap]          # kept: the attach clone hangs from it
    assert len(sr.images()) == 2
    state = os.path.join(pool.host_dirs(host1)["state"], sr.uuid)
    RBDDriver(sr.uuid, dict(device_config), driver_context(state, is_master=False)).detach(snap)
    assert sr.snaps(base) == []
    assert sr.images() == [base]
    for dp in pool.db.find("datapath", VDI=s):
        pool.db.delete("datapath", dp)


# --- what a host lacks for a datapath -------------------------------------------------------

@pytest.mark.parametrize("datapath,named", [("nbd", "nbd kernel module"),
                                            ("krbd", "rbd kernel module")])
def test_sr_create_names_what_this_host_lacks_for_a_forced_datapath(pool, device_config,
                                                                     datapath, named):
    """This machine has neither module (the guest suites run these paths for real)."""
    from drivers.ceph.datapath import module_available
    import shutil
    if module_available(datapath.replace("krbd", "rbd")):
        pytest.skip("this kernel has the %s module" % datapath)
    if datapath == "nbd" and not shutil.which("rbd-nbd"):
        named = "install the rbd-nbd package"    # the first thing it lacks
    with pytest.raises(XapiError) as e:
        pool.sr_create("rbd", dict(device_config, datapath=datapath), name_label="lacks",
                       shared=True)
    assert e.value.code == "SR_BACKEND_FAILURE_47"
    assert named in str(e.value.params)


def test_a_missing_rbd_nbd_is_named_with_its_package(monkeypatch):
    from drivers.ceph import datapath, rbd_nbd
    from framework.errors import SRError
    real = datapath._which
    monkeypatch.setattr(datapath, "_which", lambda n: None if n == "rbd-nbd" else real(n))
    monkeypatch.setattr(rbd_nbd, "which", lambda n: None if n == "rbd-nbd" else real(n))
    with pytest.raises(SRError) as e:
        datapath.check_tools("nbd")
    assert e.value.name == "SRUnavailable" and "install the rbd-nbd package" in e.value.detail
    with pytest.raises(SRError) as e:
        rbd_nbd.map_image("/nonexistent", {}, "rbd", "", "img", None, True, "t")
    assert e.value.name == "VDIUnavailable" and "rbd-nbd package" in e.value.detail


@pytest.mark.parametrize("creds", ["key", "keyring", "conf-only"])
def test_krbd_gets_key_and_monitors_from_any_device_config(ceph_env, creds):
    """What krbd hands the kernel, from each way device-config can name the cluster
    (the mapping itself runs in the guest: tests/hostpath)."""
    from drivers.ceph import credentials, krbd
    from drivers.ceph.connection import Cluster
    dc = {"user": ceph_env["SRKIT_CEPH_USER"]}
    if creds == "key":
        dc.update(monitors=ceph_env["SRKIT_CEPH_MONITORS"], key=ceph_env["SRKIT_CEPH_KEY"])
    elif creds == "keyring":
        v2 = [a for a in ceph_env["SRKIT_CEPH_MONITORS"].strip("[]").split(",")
              if a.startswith("v2:")]
        dc.update(monitors="[%s]" % v2[0], keyring=ceph_env["SRKIT_CEPH_KEYRING"])
    else:
        dc.update(conf=ceph_env["SRKIT_CEPH_CONF"])
    c = Cluster(dc)
    try:
        assert credentials.secret(dc, c.rados.conf_get) == ceph_env["SRKIT_CEPH_KEY"]
        addrs, mode = krbd.monitors(c.rados)
    finally:
        c.close()
    mons = ceph_env["SRKIT_CEPH_MONITORS"].strip("[]").split(",")
    want = "v2" if krbd.kernel_at_least(5, 11) else "v1"
    assert addrs == [m[3:] for m in mons if m.startswith(want + ":")][0]
    assert mode == ("prefer-crc" if want == "v2" else None)


def test_only_this_hosts_new_clients_are_taken_for_the_datapath_daemons(tmp_path):
    """A watcher that appeared during the attach but comes from another address (a
    command of another host on the same image) must never be recorded as the daemon's:
    once the daemon is gone, its record would have that live client blocklisted."""
    from drivers.ceph.watchers import Watchers, _ip_of

    class Rados(object):
        def get_addrs(self):
            return "[v2:10.0.0.5:0/111,v1:10.0.0.5:0/111]"

    class Cluster(object):
        rados = Rados()

    class Site(object):   # what Watchers uses of an SRContext
        cluster = Cluster()
        state_dir = str(tmp_path)
        log = driver_context(str(tmp_path)).log

    assert _ip_of("10.0.0.5:0/2396538328") == "10.0.0.5"
    Watchers(Site()).register_datapath(os.getpid(), "v", [
        {"id": 7, "addr": "10.0.0.5:0/42"}, {"id": 8, "addr": "10.0.0.9:0/43"}])
    recorded = sorted(os.listdir(str(tmp_path / "clients")))
    assert recorded == ["7.json"]
    with open(str(tmp_path / "clients" / "7.json")) as f:
        assert json.load(f)["pid"] == os.getpid()
