"""A real `kill -9` of a process recording a call: the WAV it leaves must play in standard
readers and hold every frame the process had handed to the OS (RELIABILITY.md §5.1)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from storage.recordings import repair_wav

REPO_ROOT = Path(__file__).resolve().parent.parent

# The child records like the live side does: 20 ms frames at 4x real time, drain + write
# whenever a flush is due, and it reports each write's result only after `write` returned.
CHILD = r"""
import array, sys, time
from pathlib import Path
from storage.recordings import WavRecorder

path, rate, channels = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
assert sys.byteorder == "little"
rec = WavRecorder(path, rate, channels, flush_interval_s=0.1)
step = rate // 50
n = 0
start = time.monotonic()
while True:
    frame = array.array("h", [(i * 7 + c * 1000) % 65536 - 32768
                              for i in range(n, n + step) for c in range(channels)])
    rec.append(frame.tobytes())
    n += step
    if rec.flush_due:
        rec.write(rec.drain())
        print(rec.frames_written, flush=True)
    delay = start + n / rate / 4 - time.monotonic()
    if delay > 0:
        time.sleep(delay)
"""


def expected(frames: int, channels: int) -> np.ndarray:
    i = np.arange(frames, dtype=np.int64)[:, None]
    c = np.arange(channels, dtype=np.int64)[None, :]
    return ((i * 7 + c * 1000) % 65536 - 32768).astype("<i2")


def record_and_kill(path: Path, rate: int, channels: int, kill_after_frames: int) -> int:
    """Run the child until it reports `kill_after_frames` written, SIGKILL it a moment later,
    and return the highest frame count it reported as written."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(rate), str(channels)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO_ROOT,
        env=env,
    )
    assert proc.stdout is not None
    reported = 0
    deadline = time.monotonic() + 30
    try:
        while reported < kill_after_frames:
            line = proc.stdout.readline()
            if not line:
                _, err = proc.communicate(timeout=5)
                pytest.fail(f"recorder child exited early: {err.decode(errors='replace')}")
            reported = int(line)
            assert time.monotonic() < deadline, "child too slow"
        # Land the kill at an arbitrary point of the append/write cycle, not right after a print.
        time.sleep((kill_after_frames % 7) / 100)
        proc.send_signal(signal.SIGKILL)
        rest, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    for line in rest.split():
        reported = max(reported, int(line))
    return reported


@pytest.mark.parametrize(
    ("rate", "channels", "kill_after_frames"),
    [(8000, 2, 12_000), (8000, 2, 20_011), (16000, 1, 24_005), (48000, 2, 50_003)],
)
def test_kill_minus_nine_loses_nothing_that_was_written(
    tmp_path: Path, rate: int, channels: int, kill_after_frames: int
) -> None:
    path = tmp_path / "calls" / "c1.wav"
    reported = record_and_kill(path, rate, channels, kill_after_frames)
    assert reported >= kill_after_frames

    # Straight after the crash, without any repair, both readers accept the file...
    with wave.open(str(path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (rate, channels, 2)
        frames = w.getnframes()
        data = np.frombuffer(w.readframes(frames), dtype="<i2").reshape(-1, channels)
    # ... and hold at least every frame the child was told had been written, sample-exact.
    assert frames >= reported
    np.testing.assert_array_equal(data, expected(frames, channels))
    decoded, sr = sf.read(str(path), dtype="int16", always_2d=True)
    assert sr == rate and len(decoded) >= reported
    np.testing.assert_array_equal(decoded[:frames], expected(frames, channels))

    # Repair exposes anything written after the last header update (a kill between the data
    # write and the header patch): at most the one write the child had no time to report.
    repaired = repair_wav(path)
    assert repaired >= frames
    assert repaired - reported <= rate // 10 + rate // 50
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == repaired
        data = np.frombuffer(w.readframes(repaired), dtype="<i2").reshape(-1, channels)
    np.testing.assert_array_equal(data, expected(repaired, channels))
    assert repair_wav(path) == repaired
