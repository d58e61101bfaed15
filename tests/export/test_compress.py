"""compress: the ready-made zero frames and the sinks, checked by zstd itself."""
import os
import subprocess

import pytest

from framework.export import compress

MiB = 1024 * 1024


@pytest.mark.parametrize("length", [compress.ZERO_UNIT, 64 * MiB, 67 * MiB, 130 * MiB])
def test_zero_frames_are_zeros_to_zstd(tmp_path, length):
    path = tmp_path / "z.zst"
    path.write_bytes(compress.zero_frames(length))
    assert subprocess.run(["zstd", "-t", "-q", str(path)]).returncode == 0   # checksums
    out = subprocess.run(["zstd", "-d", "-c", str(path)], stdout=subprocess.PIPE, check=True)
    assert out.stdout == bytes(length)
    assert os.path.getsize(path) < length // 1000


def test_a_wrong_checksum_is_caught(tmp_path):
    frame = bytearray(compress.zero_frames(compress.ZERO_UNIT))
    frame[-1] ^= 1
    path = tmp_path / "bad.zst"
    path.write_bytes(bytes(frame))
    assert subprocess.run(["zstd", "-t", "-q", str(path)]).returncode != 0


@pytest.mark.parametrize("engine", ["cli", "module"])
def test_zero_runs_end_the_frame_and_data_resumes(tmp_path, monkeypatch, engine):
    if engine == "module":
        pytest.importorskip("zstandard")
    monkeypatch.setenv("SRKIT_ZSTD", engine)
    data = os.urandom(MiB) + bytes(100) + b"tail"
    path = tmp_path / "s.zst"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT)
    sink = compress.compressor(fd, "zstd", 3)
    sink.metadata(b"SRKIT1Hx")
    sink.write(data)
    sink.zeros(compress.ZERO_RUN_MIN + 5)     # whole MiBs as zero frames, 5 bytes compressed
    sink.write(data)
    sink.zeros(7)
    sink.close()
    sink.metadata(b"SRKIT1Ty")
    os.close(fd)
    out = subprocess.run(["zstd", "-d", "-c", str(path)], stdout=subprocess.PIPE, check=True)
    assert out.stdout == data + bytes(compress.ZERO_RUN_MIN + 5) + data + bytes(7)
    assert os.path.getsize(path) < 2 * MiB + 64 * 1024


def test_plain_sink_leaves_holes_in_a_file_and_writes_zeros_to_a_pipe(tmp_path):
    path = tmp_path / "p.raw"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sink = compress.compressor(fd, "none")
    sink.write(b"a" * 4096)
    sink.zeros(64 * MiB)
    sink.write(b"b" * 4096)
    sink.zeros(8 * MiB)
    sink.close()
    os.close(fd)
    assert os.path.getsize(path) == 72 * MiB + 8192
    assert os.stat(path).st_blocks * 512 < MiB     # the zeros were never written
    with open(path, "rb") as f:
        assert f.read() == b"a" * 4096 + bytes(64 * MiB) + b"b" * 4096 + bytes(8 * MiB)
    r, w = os.pipe()
    try:
        assert not compress.compressor(w, "none").sparse
    finally:
        os.close(r)
        os.close(w)


@pytest.fixture(params=["cli", "module"])
def engine(request, monkeypatch):
    """The zstd engine of the reading end (SRKIT_ZSTD)."""
    if request.param == "module":
        pytest.importorskip("zstandard")
    monkeypatch.setenv("SRKIT_ZSTD", request.param)
    return request.param


def _srkit_stream(path, parts):
    """A srkit-framed zstd stream of ``parts`` (bytes, or an int: that many zeros)."""
    from framework.export import container
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    sink = compress.compressor(fd, "zstd", 3)
    sink.metadata(container.payload(container.HEADER_TAG, {"format": "raw"}))
    for part in parts:
        sink.zeros(part) if isinstance(part, int) else sink.write(part)
    sink.metadata(container.payload(container.TRAILER_TAG, {"digest": "x"}))
    sink.close()
    os.close(fd)


def _pieces(path):
    from framework.export import instream
    fd = os.open(str(path), os.O_RDONLY)
    try:
        src = instream.open_input(fd)
        got = [(offset, len(data) if isinstance(data, instream.ZeroRun) else bytes(data))
               for offset, data in src.pieces()]
        return src, got
    finally:
        os.close(fd)


def test_announced_zero_runs_are_not_decompressed(tmp_path, engine):
    """The reader yields the writer's zero runs as ZeroRun at their offsets (never
    decompressing them), the data around them byte for byte, and zstd -d still
    expands the same file to the whole image."""
    a, b = os.urandom(3 * MiB + 5), b"srkit" * 1000
    run1, run2 = 80 * MiB, compress.ZERO_RUN_MIN
    path = tmp_path / "s.zst"
    _srkit_stream(path, [run1, a, run2 + 3, b, run1])
    src, got = _pieces(path)
    runs = [(offset, n) for offset, n in got if isinstance(n, int)]
    assert runs == [(0, run1), (run1 + len(a), run2), (run1 + len(a) + run2 + 3 + len(b), run1)]
    data = b"".join(piece for _, piece in got if not isinstance(piece, int))
    assert data == a + bytes(3) + b
    assert src.trailer == {"digest": "x"}
    whole = subprocess.run(["zstd", "-d", "-c", str(path)], stdout=subprocess.PIPE, check=True)
    assert whole.stdout == bytes(run1) + a + bytes(run2 + 3) + b + bytes(run1)


def test_read_gives_the_zeros_of_a_run(tmp_path, engine):
    """Readers that want bytes (format detection, vhd/qcow2) get a run's zeros."""
    from framework.export import instream
    path = tmp_path / "s.zst"
    _srkit_stream(path, [compress.ZERO_RUN_MIN, b"data"])
    fd = os.open(str(path), os.O_RDONLY)
    try:
        src = instream.open_input(fd)
        head = src.read(8)
        src.unread(head)
        assert src.read(compress.ZERO_RUN_MIN - 2) == bytes(compress.ZERO_RUN_MIN - 2)
        assert src.read(100) == b"\0\0data"
    finally:
        os.close(fd)


def test_an_altered_zero_frame_is_corrupt(tmp_path, engine):
    from framework.errors import SRError
    path = tmp_path / "s.zst"
    _srkit_stream(path, [b"x" * 100, compress.ZERO_RUN_MIN, b"y" * 100])
    raw = bytearray(path.read_bytes())
    frame = compress.zero_frames(compress.ZERO_UNIT)
    at = raw.find(frame)
    raw[at + 20] ^= 0xFF      # a block of the first zero frame
    path.write_bytes(bytes(raw))
    with pytest.raises(SRError) as e:
        _pieces(path)
    assert "corrupt" in str(e.value.message)
