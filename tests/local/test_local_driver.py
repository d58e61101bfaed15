"""The `local` driver on real filesystems: sparse copies, reflinks, online resize,
and the scan-safety rule when the SR's filesystem is not mounted."""
import os
import shutil
import subprocess

import pytest

from simulator import Pool
from simulator.errors import XapiError

MiB = 1 << 20


def write_at(pool, vdi, offset, data):
    dev = pool.vdi_attach(vdi)['params']
    try:
        fd = os.open(dev, os.O_WRONLY)
        os.pwrite(fd, data, offset)
        os.fsync(fd)
        os.close(fd)
    finally:
        pool.vdi_detach(vdi)


def raw_file(storage, pool, sr, vdi):
    return os.path.join(storage, pool.sr_record(sr)['uuid'],
                        pool.vdi_record(vdi)['location'] + '.raw')


@pytest.fixture
def local(tmp_path):
    storage = tmp_path / 'storage'
    storage.mkdir()
    pool = Pool(tmp_path / 'pool')
    sr = pool.sr_create('local', {'location': str(storage)}, name_label='t')
    yield pool, sr, str(storage)
    pool.close()


def test_snapshot_keeps_holes_and_data(local):
    pool, sr, storage = local
    vdi = pool.vdi_create(sr, 64 * MiB, name_label='sparse')
    write_at(pool, vdi, 0, b'A' * 4096)
    write_at(pool, vdi, 40 * MiB, b'B' * 4096)
    snap = pool.vdi_snapshot(vdi)
    path = raw_file(storage, pool, sr, snap)
    st = os.stat(path)
    assert st.st_size == 64 * MiB
    assert st.st_blocks * 512 <= 1 * MiB, 'the copy filled the holes'
    with open(path, 'rb') as f:
        assert os.pread(f.fileno(), 4096, 0) == b'A' * 4096
        assert os.pread(f.fileno(), 4096, 40 * MiB) == b'B' * 4096
        assert os.pread(f.fileno(), 4096, 20 * MiB) == bytes(4096)


def test_extents_report_where_data_is(local):
    from drivers.local.driver import LocalDriver
    from simulator.testkit import driver_context
    pool, sr, storage = local
    vdi = pool.vdi_create(sr, 64 * MiB)
    write_at(pool, vdi, 8 * MiB, b'x' * 4096)
    write_at(pool, vdi, 50 * MiB, b'y' * 4096)
    driver = LocalDriver(pool.sr_record(sr)['uuid'], {'location': storage},
                         driver_context('/tmp'))
    extents = driver.extents(pool.vdi_record(vdi)['location'])
    covered = lambda off: any(s <= off < s + n for s, n in extents)  # noqa: E731
    assert covered(8 * MiB) and covered(50 * MiB)
    assert not covered(30 * MiB)
    assert sum(n for _, n in extents) < 8 * MiB


def test_resize_while_attached_grows_the_device(local):
    pool, sr, storage = local
    vdi = pool.vdi_create(sr, 16 * MiB)
    dev = pool.vdi_attach(vdi)['params']
    try:
        assert pool.vdi_resize(vdi, 48 * MiB) == 48 * MiB
        with open(dev, 'rb') as f:
            assert f.seek(0, os.SEEK_END) == 48 * MiB
    finally:
        pool.vdi_detach(vdi)


def test_delete_refused_while_attached(local):
    pool, sr, storage = local
    vdi = pool.vdi_create(sr, 4 * MiB)
    pool.vdi_attach(vdi)
    try:
        with pytest.raises(XapiError) as e:
            pool.call('vdi_delete', vdi=vdi)
        assert e.value.code == 'VDI_IN_USE'
        assert os.path.exists(raw_file(storage, pool, sr, vdi))
    finally:
        pool.vdi_detach(vdi)


@pytest.fixture
def xfs(tmp_path):
    """A real XFS with reflink, on a loop device (skipped where it cannot be made)."""
    if not shutil.which('mkfs.xfs'):
        pytest.skip('mkfs.xfs not installed (xfsprogs)')
    image = tmp_path / 'xfs.img'
    mnt = tmp_path / 'xfs'
    mnt.mkdir()
    with open(image, 'wb') as f:
        f.truncate(512 * MiB)
    subprocess.run(['mkfs.xfs', '-q', '-m', 'reflink=1', str(image)], check=True)
    if subprocess.run(['mount', '-o', 'loop', str(image), str(mnt)]).returncode:
        pytest.skip('cannot loop-mount here')
    yield str(mnt)
    subprocess.run(['umount', '-l', str(mnt)])


def test_snapshot_is_a_reflink_on_xfs(tmp_path, xfs):
    pool = Pool(tmp_path / 'pool')
    sr = pool.sr_create('local', {'location': xfs})
    vdi = pool.vdi_create(sr, 32 * MiB)
    write_at(pool, vdi, 0, b'before' * 1000)
    snap = pool.vdi_snapshot(vdi)
    with open(os.path.join(pool.path, 'SMlog')) as f:
        assert 'by reflink' in f.read()
    write_at(pool, vdi, 0, b'after!' * 1000)
    with open(raw_file(xfs, pool, sr, snap), 'rb') as f:
        assert f.read(6000) == b'before' * 1000
    for ref in (snap, vdi):
        pool.vdi_destroy(ref)
    for pbd in pool.sr_record(sr)['PBDs']:
        pool.pbd_unplug(pbd)
    pool.sr_destroy(sr)


def test_scan_of_an_unmounted_sr_forgets_nothing(tmp_path, xfs):
    """The ZFSSR lesson (xcp-ng/xcp#400): an unmounted filesystem looks empty."""
    pool = Pool(tmp_path / 'pool')
    sr = pool.sr_create('local', {'location': xfs})
    vdis = set(pool.vdi_create(sr, 4 * MiB, name_label='keep %d' % i) for i in range(3))
    subprocess.run(['umount', xfs], check=True)
    with pytest.raises(XapiError) as e:
        pool.sr_scan(sr)
    assert e.value.code == 'SR_BACKEND_FAILURE_47'
    assert set(pool.sr_record(sr)['VDIs']) == vdis
