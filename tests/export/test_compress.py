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
