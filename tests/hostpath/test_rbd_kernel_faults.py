"""The faults found when rbd's kernel datapaths first ran in a guest (issue 18), each
checked against the kernel's and Ceph's own view: krbd's credentials and monitors,
which device an attach owns, what a killed rbd-nbd daemon or vdi_attach leaves."""
import os
import signal
import subprocess

import pytest

from rbd_guest import (MiB, krbd_devices, mapped, nbd_server, pattern, rbd_nbd_daemons,
                       read_only, unmapped_soon)
from simulator.errors import XapiError
from simulator.testkit import read_at, wait_until, write_at

pytestmark = pytest.mark.hostpath


def _v2_only(monitors):
    """'[v2:ip:port,v1:ip:port]' -> '[v2:ip:port]'."""
    return "[%s]" % [a for a in monitors.strip("[]").split(",") if a.startswith("v2:")][0]


@pytest.mark.parametrize("creds", ["conf-only", "v2-monitors-and-keyring"])
def test_krbd_takes_monitors_and_key_from_wherever_device_config_has_them(
        pool, make_sr, guest_ceph, creds):
    """Before: only an inline key reached the kernel ("libceph: no secret set"), and
    monitors only in conf or only by v2 address gave EINVAL."""
    if creds == "conf-only":
        over = {"conf": guest_ceph["SRKIT_CEPH_CONF"], "monitors": None, "key": None}
    else:
        over = {"monitors": _v2_only(guest_ceph["SRKIT_CEPH_MONITORS"]), "key": None,
                "keyring": guest_ceph["SRKIT_CEPH_KEYRING"]}
    sr = make_sr(datapath="krbd", **over)
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label=creds)
    dev = pool.vdi_attach(v, writable=True)["params"]
    assert dev.startswith("/dev/rbd")
    write_at(dev, 0, pattern(4096, 1))
    assert sr.read(sr.uuid_of(v), 0, 4096) == pattern(4096, 1)
    pool.vdi_detach(v)
    assert krbd_devices() == {}


def test_krbd_config_info_names_a_keyring_key_never_the_secret(pool, make_sr, guest_ceph):
    sr = make_sr(datapath="krbd")
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="secret")
    dev = pool.vdi_attach(v, writable=True)["params"]
    info = krbd_devices()[os.path.basename(dev)[len("rbd"):]]
    mons, opts, rbd_pool, image, snap = info.split()
    assert guest_ceph["SRKIT_CEPH_KEY"] not in info and "secret=" not in opts
    opts = opts.split(",")
    assert any(o.startswith("key=") for o in opts), info
    assert "ms_mode=prefer-crc" in opts and "noshare" in opts and \
        "_pool_ns=%s" % sr.uuid in opts, info
    assert (rbd_pool, image, snap) == ("rbd", sr.uuid_of(v), "-")
    pool.vdi_detach(v)


def _cli(guest_ceph, *args):
    return subprocess.run(["rbd", "-c", guest_ceph["SRKIT_CEPH_CONF"], "--id",
                           guest_ceph["SRKIT_CEPH_USER"]] + list(args),
                          capture_output=True, text=True, timeout=120)


def test_krbd_never_returns_or_unmaps_a_mapping_it_did_not_create(pool, make_sr, guest_ceph):
    """Before: the device was looked up by pool/image/snap, so the lowest-numbered
    mapping of the image was returned (another attach's, read-write, to a read-only
    attach) and unmapped by its detach."""
    sr = make_sr(datapath="krbd")
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="shared")
    uuid = sr.uuid_of(v)
    sr.write(uuid, 0, pattern(4096, 9))
    stale = _cli(guest_ceph, "device", "map", "-o", "noshare", "rbd/%s/%s" % (sr.uuid, uuid))
    assert stale.returncode == 0, stale.stderr
    stale = stale.stdout.strip()
    try:
        host0, host1 = pool.hosts
        rw = pool.vdi_attach(v, host=host0, writable=True)["params"]
        ro = pool.vdi_attach(v, host=host1, writable=False)["params"]
        assert len({stale, rw, ro}) == 3, (stale, rw, ro)
        assert read_only(ro) and not read_only(rw)
        assert read_at(ro, 0, 4096) == pattern(4096, 9)
        pool.vdi_detach(v, host=host1)
        assert not mapped(ro) and mapped(rw) and mapped(stale)
        pool.vdi_detach(v, host=host0)
        assert not mapped(rw) and mapped(stale)
    finally:
        _cli(guest_ceph, "device", "unmap", stale)


def test_a_killed_rbd_nbd_daemon_is_replaced_and_never_mistaken_for_another(pool, make_sr):
    """A killed daemon frees /dev/nbdN for the next map: a repeated vdi_attach must not
    return it (another VDI's device by then), nor its detach unmap that device."""
    sr = make_sr(datapath="nbd")
    a = pool.vdi_create(sr.ref, 4 * MiB, name_label="a")
    b = pool.vdi_create(sr.ref, 4 * MiB, name_label="b")
    dev_a = pool.vdi_attach(a, writable=True)["params"]
    write_at(dev_a, 0, pattern(4096, 1))
    os.kill(nbd_server(dev_a), signal.SIGKILL)
    assert unmapped_soon(dev_a)
    dev_b = pool.vdi_attach(b, writable=True)["params"]
    write_at(dev_b, 0, pattern(4096, 2))
    again = pool.vdi_attach(a, writable=True)["params"]    # xapi repeats the attach
    assert again != dev_b and mapped(again)
    assert read_at(again, 0, 4096) == pattern(4096, 1)
    os.kill(nbd_server(again), signal.SIGKILL)             # and the daemon dies again
    assert unmapped_soon(again)
    pool.vdi_detach(a)                                     # detach leaves b alone
    assert mapped(dev_b) and read_at(dev_b, 0, 4096) == pattern(4096, 2)
    assert "no longer served it" in open(os.path.join(pool.path, "SMlog")).read()
    pool.vdi_detach(b)
    assert rbd_nbd_daemons() == []


@pytest.mark.parametrize("datapath", ["nbd", "krbd"])
def test_a_mapping_left_by_a_killed_vdi_attach_is_cleaned_by_the_scan(pool, make_sr, datapath):
    """Killed after the map, before its reply: xapi saw a failed attach and will never
    detach; the mapping's watch would answer VDI_IN_USE to a delete forever."""
    sr = make_sr(datapath=datapath)
    v = pool.vdi_create(sr.ref, 4 * MiB, name_label="orphan")
    pool.config["extra_env"] = {"SRKIT_CRASH_AT": "rbd.attach.after-record"}
    try:
        with pytest.raises(XapiError):
            pool.vdi_attach(v, writable=True)
    finally:
        pool.config["extra_env"] = {}
    assert rbd_nbd_daemons() or krbd_devices()
    with pytest.raises(XapiError) as e:
        pool.vdi_destroy(v)
    assert e.value.code == "VDI_IN_USE"
    pool.sr_scan(sr.ref)
    assert wait_until(lambda: not rbd_nbd_daemons() and not krbd_devices(), 10)
    pool.vdi_destroy(v)
    assert sr.images() == []
