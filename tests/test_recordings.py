"""WavRecorder and repair_wav on real files, read back with stdlib `wave` and libsndfile."""

from __future__ import annotations

import os
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from storage import recordings
from storage.errors import RecordingError
from storage.recordings import HEADER_BYTES, WavRecorder, repair_wav


def pcm(frames: int, channels: int = 2, start: int = 0) -> bytes:
    """Distinct, reproducible samples: frame i channel c holds (i * 7 + c * 1000) mod 2^16."""
    return samples(frames, channels, start).tobytes()


def samples(frames: int, channels: int = 2, start: int = 0) -> np.ndarray:
    i = np.arange(start, start + frames, dtype=np.int64)[:, None]
    c = np.arange(channels, dtype=np.int64)[None, :]
    return ((i * 7 + c * 1000) % 65536 - 32768).astype("<i2")


def read_wave(path: Path) -> tuple[Any, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        data = np.frombuffer(w.readframes(params.nframes), dtype="<i2")
    return params, data.reshape(-1, params.nchannels)


def test_new_recording_is_a_valid_empty_wav(tmp_path: Path) -> None:
    path = tmp_path / "2026" / "03" / "01" / "c1.wav"  # parent directories are created
    rec = WavRecorder(path, 8000, 2)
    params, _ = read_wave(path)
    assert (params.nchannels, params.sampwidth, params.framerate, params.nframes) == (2, 2, 8000, 0)
    assert path.stat().st_size == HEADER_BYTES
    assert path.stat().st_mode & 0o777 == 0o600  # the owner's only (issue 17 item 10)
    assert rec.close() == 0


def test_an_existing_recording_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "c1.wav"
    WavRecorder(path, 8000, 2).close()
    with pytest.raises(FileExistsError):
        WavRecorder(path, 8000, 2)


def test_append_only_buffers_and_never_touches_the_disk(tmp_path: Path) -> None:
    path = tmp_path / "c1.wav"
    rec = WavRecorder(path, 8000, 2, flush_interval_s=0.5)
    for n in range(10):
        rec.append(pcm(160, start=160 * n))  # 10 x 20 ms
    assert rec.frames == 1600 and rec.frames_written == 0
    assert path.stat().st_size == HEADER_BYTES
    assert not rec.flush_due  # 200 ms < 500 ms
    for n in range(10, 25):
        rec.append(pcm(160, start=160 * n))
    assert rec.flush_due  # 500 ms buffered
    data = rec.drain()
    assert data == pcm(4000)
    assert not rec.flush_due and rec.drain() == b""
    assert path.stat().st_size == HEADER_BYTES
    rec.write(data)
    assert rec.frames_written == 4000
    rec.close()


def test_header_is_consistent_after_every_write(tmp_path: Path) -> None:
    path = tmp_path / "c1.wav"
    rec = WavRecorder(path, 16000, 2, flush_interval_s=0.1)
    written = 0
    for n in range(12):
        rec.append(pcm(320 + n, start=written))
        rec.write(rec.drain())
        written += 320 + n
        # Read while the recorder is still open, as a supervisor's player would.
        params, data = read_wave(path)
        assert params.nframes == written == rec.frames_written
        np.testing.assert_array_equal(data, samples(written))
        info = sf.info(str(path))
        assert info.frames == written
        assert path.stat().st_size == HEADER_BYTES + written * 4
    assert rec.close() == written


def test_bytearray_input_is_detached_from_the_caller(tmp_path: Path) -> None:
    rec = WavRecorder(tmp_path / "c1.wav", 8000, 1)
    reused = bytearray(pcm(80, channels=1))
    rec.append(reused)
    reused[:] = bytes(len(reused))  # the caller reuses its buffer
    assert rec.drain() == pcm(80, channels=1)
    rec.close()


@settings(max_examples=40, deadline=None)
@given(
    chunk_frames=st.lists(st.integers(0, 700), min_size=1, max_size=40),
    flush_at=st.lists(st.booleans(), min_size=40, max_size=40),
    channels=st.sampled_from([1, 2, 3]),
    rate=st.sampled_from([8000, 16000, 48000]),
)
def test_round_trip_is_sample_exact_whatever_the_chunking(
    tmp_path_factory: pytest.TempPathFactory,
    chunk_frames: list[int],
    flush_at: list[bool],
    channels: int,
    rate: int,
) -> None:
    path = tmp_path_factory.mktemp("rt") / "c.wav"
    total = sum(chunk_frames)
    audio = samples(total, channels)
    rec = WavRecorder(path, rate, channels, flush_interval_s=0.02)
    pos = 0
    for n, flush in zip(chunk_frames, flush_at, strict=False):
        rec.append(audio[pos : pos + n].tobytes())
        pos += n
        if flush or rec.flush_due:
            rec.write(rec.drain())
    assert rec.frames == total
    assert rec.close() == total
    params, data = read_wave(path)
    assert (params.nchannels, params.framerate, params.nframes) == (channels, rate, total)
    np.testing.assert_array_equal(data, audio)
    decoded, sr = sf.read(str(path), dtype="int16", always_2d=True)
    assert sr == rate
    np.testing.assert_array_equal(decoded, audio)


def test_fsync_mode_writes_the_same_file(tmp_path: Path) -> None:
    with WavRecorder(tmp_path / "c1.wav", 8000, 2, fsync=True) as rec:
        rec.append(pcm(4000))
        rec.write(rec.drain())
        rec.append(pcm(100, start=4000))
    _, data = read_wave(tmp_path / "c1.wav")  # close() wrote the remainder
    np.testing.assert_array_equal(data, samples(4100))


def test_bad_input_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        WavRecorder(tmp_path / "a.wav", 0, 2)
    with pytest.raises(ValueError, match="channels"):
        WavRecorder(tmp_path / "a.wav", 8000, 0)
    with pytest.raises(ValueError, match="flush_interval_s"):
        WavRecorder(tmp_path / "a.wav", 8000, 2, flush_interval_s=0)
    rec = WavRecorder(tmp_path / "b.wav", 8000, 2)
    with pytest.raises(ValueError, match="whole frames of 4 bytes"):
        rec.append(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="whole frames"):
        rec.write(b"\x00\x01")
    rec.close()
    assert rec.close() == 0  # closing twice is harmless
    with pytest.raises(RecordingError, match="closed"):
        rec.append(pcm(1))
    with pytest.raises(RecordingError, match="closed"):
        rec.write(pcm(1))


def test_the_wav_size_limit_is_enforced_before_buffering(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recordings, "MAX_DATA_BYTES", 4 * 1000)
    rec = WavRecorder(tmp_path / "c1.wav", 8000, 2)
    rec.append(pcm(1000))
    with pytest.raises(RecordingError, match="4 GiB"):
        rec.append(pcm(1))
    assert rec.close() == 1000


def stale_file(path: Path, patched_frames: int, extra_frames: int, torn_bytes: int) -> None:
    """A recording as a crash leaves it: audio on disk beyond what the header says, maybe a
    torn last frame (data written, header not yet patched, process killed)."""
    rec = WavRecorder(path, 8000, 2)
    rec.append(pcm(patched_frames))
    rec.write(rec.drain())
    rec.close()
    with open(path, "ab", buffering=0) as f:
        tail = pcm(extra_frames + 1, start=patched_frames)
        f.write(tail[: extra_frames * 4 + torn_bytes])


@pytest.mark.parametrize("torn_bytes", [0, 1, 3])
def test_repair_recovers_frames_behind_a_stale_header(tmp_path: Path, torn_bytes: int) -> None:
    path = tmp_path / "c1.wav"
    stale_file(path, patched_frames=800, extra_frames=1200, torn_bytes=torn_bytes)
    assert read_wave(path)[0].nframes == 800  # the stale header hides the tail
    assert repair_wav(path) == 2000
    params, data = read_wave(path)
    assert params.nframes == 2000
    np.testing.assert_array_equal(data, samples(2000))
    decoded, _ = sf.read(str(path), dtype="int16", always_2d=True)
    np.testing.assert_array_equal(decoded, samples(2000))
    assert path.stat().st_size == HEADER_BYTES + 2000 * 4  # the torn frame is gone


def test_repair_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "c1.wav"
    stale_file(path, patched_frames=100, extra_frames=50, torn_bytes=2)
    assert repair_wav(path) == 150
    once = path.read_bytes()
    mtime = path.stat().st_mtime_ns
    assert repair_wav(path) == 150
    assert path.read_bytes() == once
    assert path.stat().st_mtime_ns == mtime  # a consistent file is not even rewritten


def test_repair_of_a_header_only_file_gives_zero_frames(tmp_path: Path) -> None:
    path = tmp_path / "c1.wav"
    WavRecorder(path, 8000, 2)  # crashed before any write; never closed
    assert repair_wav(path) == 0
    assert read_wave(path)[0].nframes == 0


@pytest.mark.parametrize("content", [b"", b"RIFF", b"RIFF\x00\x00\x00\x00AVI LIST", b"x" * 100])
def test_repair_refuses_what_is_not_a_wav(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.wav"
    path.write_bytes(content)
    with pytest.raises(RecordingError):
        repair_wav(path)
    assert path.read_bytes() == content  # left untouched


def test_repair_handles_a_file_with_extra_chunks_before_data(tmp_path: Path) -> None:
    # Written by another tool: a LIST chunk between fmt and data.
    path = tmp_path / "other.wav"
    header = recordings.wav_header(8000, 1, 0)
    info = b"LIST" + (5).to_bytes(4, "little") + b"INFOx\x00"  # odd size + pad byte
    path.write_bytes(header[:36] + info + header[36:] + pcm(300, channels=1))
    assert repair_wav(path) == 300
    params, data = read_wave(path)
    assert params.nframes == 300
    np.testing.assert_array_equal(data, samples(300, channels=1))
    assert os.path.getsize(path) == HEADER_BYTES + len(info) + 600
