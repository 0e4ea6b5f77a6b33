"""Audio redaction of the live recording (issue 18 item 2), without a server: the in-place
masking of `storage.audio_redaction` (spans already written, being written, not written yet;
silence and tone; every channel; the rest sample-exact), its crash journal under a real
`kill -9` of a process recording a call, and the planner of `monitor.privacy.audio_redact`
(word times to spans, the fallback to the whole utterance, the checked frame)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr.types import WordTiming
from monitor.privacy.audio_redact import CallAudioRedactor, entity_span_ms
from monitor.privacy.redactor import MaskedEntity, SegmentRedacted
from monitor.privacy.scrub import DtmfMasker
from storage.audio_redaction import (
    RedactingRecorder,
    fill_frames,
    journal_path,
    recover_redaction,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
RATE, CH = 8000, 2


def audio(frames: int, first: int = 0) -> np.ndarray:
    """Distinct non-zero samples per frame and channel, so any change shows."""
    i = np.arange(first, first + frames, dtype=np.int64)[:, None]
    c = np.arange(CH, dtype=np.int64)[None, :]
    return ((i * 7 + c * 1000) % 30000 + 1).astype("<i2")


def read(path: Path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16", always_2d=True)
    assert rate == RATE
    return data


@pytest.mark.parametrize("fill", ["silence", "tone"])
def test_masks_land_wherever_the_audio_is_and_nothing_else_changes(
    tmp_path: Path, fill: str
) -> None:
    path = tmp_path / "c.wav"
    rec = RedactingRecorder(path, RATE, CH, flush_interval_s=0.25, fill=fill)  # type: ignore[arg-type]
    assert journal_path(path).exists()  # before any audio is written
    src = audio(RATE * 4)
    masks = [(100, 900), (3000, 5000), (12_000, 20_000), (31_000, 32_000)]
    pos = 0
    for end in range(160, len(src) + 1, 160):  # 20 ms frames, flushed every 250 ms
        rec.append(src[pos:end].tobytes())
        pos = end
        if pos == 4000:
            rec.redact(100, 900)  # written already: overwritten in place
            rec.redact(3000, 5000)  # half written, half still buffered
        if pos == 11_840:
            rec.redact(12_000, 20_000)  # not appended yet: waits for its audio
        if rec.flush_due:
            rec.write(rec.drain())
    rec.close()
    rec.redact(31_000, 32_000)  # after the recording is closed (the verdict's last masks)
    masked = rec.finish_redaction(unverified=[(31_500, 40_000)])  # past the end: clamped
    assert not journal_path(path).exists()
    got = read(path)
    want = src.copy()
    for a, b in [*masks, (31_500, 32_000)]:
        want[a:b] = np.frombuffer(fill_frames(a, b - a, CH, RATE, fill), "<i2").reshape(-1, CH)  # type: ignore[arg-type]
    np.testing.assert_array_equal(got, want)  # the masks, every channel; the rest exact
    assert masked == sum(b - a for a, b in masks) + 500  # + the unverified part in the file
    if fill == "tone":
        seg = got[12_000:20_000, 0].astype(float)
        assert abs(seg.max() / 32767 - 0.1) < 0.001  # a 1 kHz sine peaking at -20 dBFS
        assert abs(np.sqrt(np.mean(seg**2)) / 32767 - 0.1 / np.sqrt(2)) < 0.001
        assert np.all(got[12_000:20_000, 0] == got[12_000:20_000, 1])
    else:
        assert not got[12_000:20_000].any()


def test_finish_before_close_is_refused_and_a_journal_stays(tmp_path: Path) -> None:
    from storage.errors import RecordingError

    rec = RedactingRecorder(tmp_path / "c.wav", RATE, CH)
    with pytest.raises(RecordingError):
        rec.finish_redaction()
    rec.close()
    rec.abandon()
    assert journal_path(tmp_path / "c.wav").exists()
    assert recover_redaction(tmp_path / "c.wav") == 0  # nothing recorded: nothing to mask
    assert recover_redaction(tmp_path / "c.wav") is None  # and done


# The child records like the live call: 20 ms frames, a flush every 100 ms; it confirms the
# audio checked up to 1 s behind, masks [2.0 s, 2.5 s) once 3 s are in, then keeps going.
CHILD = r"""
import sys, time
import numpy as np
from pathlib import Path
from storage.audio_redaction import RedactingRecorder

path, rate, ch = Path(sys.argv[1]), 8000, 2
rec = RedactingRecorder(path, rate, ch, flush_interval_s=0.1)
step, n, t0 = rate // 50, 0, time.monotonic()
while True:
    i = np.arange(n, n + step)[:, None]
    c = np.arange(ch)[None, :]
    rec.append((((i * 7 + c * 1000) % 30000) + 1).astype("<i2").tobytes())
    n += step
    if n == 3 * rate:
        rec.redact(2 * rate, 2 * rate + rate // 2)
    if rec.flush_due:
        rec.confirm(max(0, n - rate))
        rec.write(rec.drain())
        print(rec.frames_written, flush=True)
    time.sleep(max(0.0, t0 + n / rate / 4 - time.monotonic()))
"""


def test_kill_9_mid_call_never_leaves_unchecked_audio_in_the_recording(tmp_path: Path) -> None:
    path = tmp_path / "calls" / "c.wav"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO_ROOT, env=env,
    )  # fmt: skip
    assert proc.stdout is not None
    written, deadline = 0, time.monotonic() + 60
    try:
        while written < 5 * RATE:
            line = proc.stdout.readline()
            assert line, proc.communicate(timeout=5)[1].decode(errors="replace")
            written = int(line)
            assert time.monotonic() < deadline
        time.sleep(0.037)  # somewhere inside the next append/write cycle
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert journal_path(path).exists()
    before = read(path)  # what the crash left: still clear past the checked point

    masked = recover_redaction(path)
    got = read(path)
    assert not journal_path(path).exists() and len(got) == len(before) >= 5 * RATE
    # Checked audio is kept exactly, with its mask; everything after the checked point (at
    # least the last second) is silence. The journal can only be behind, never ahead.
    checked = len(got) - masked  # type: ignore[operator]
    assert 3 * RATE <= checked <= len(got) - RATE
    want = audio(checked)
    want[2 * RATE : 2 * RATE + RATE // 2] = 0
    np.testing.assert_array_equal(got[:checked], want)
    assert not got[checked:].any()
    assert before[checked:].all()  # (it was audible before recovery)
    assert recover_redaction(path) is None


def _seg(text: str, start_ms: int, end_ms: int, src: tuple[int, int]) -> SegmentRedacted:
    e = MaskedEntity("pan", "[PAN]", 18, 23, start_ms, end_ms, *src)
    return SegmentRedacted("customer", start_ms, end_ms, "My card number is [PAN].", (e,), 0)


class _Sink:
    def __init__(self) -> None:
        self.masks: list[tuple[int, int]] = []
        self.confirmed: list[int] = []

    def redact(self, first: int, end: int) -> None:
        self.masks.append((first, end))

    def confirm(self, frame: int) -> None:
        self.confirmed.append(frame)


def test_planner_maps_the_masked_characters_to_word_times() -> None:
    # "My card number is 4532-0151-1283-0366." said from 10 s; the number at 0.92-6.2 s.
    text = "My card number is 4532-0151-1283-0366."
    words = (WordTiming(0.0, 0.12, 0, 2), WordTiming(0.7, 0.92, 15, 17),
             WordTiming(0.92, 1.92, 18, 22), WordTiming(1.92, 3.6, 22, 27),
             WordTiming(3.6, 4.66, 27, 32), WordTiming(4.66, 6.2, 32, 37),
             WordTiming(6.2, 6.48, 37, 38))  # fmt: skip
    seg = _seg(text, 10_000, 16_600, (18, 37))
    assert entity_span_ms(seg, seg.entities[0], words, 250) == (10_670, 16_450, True)
    assert entity_span_ms(seg, seg.entities[0], words, 2000) == (10_000, 16_600, True)
    assert entity_span_ms(seg, seg.entities[0], (), 250) == (10_000, 16_600, False)
    sink = _Sink()
    planner = CallAudioRedactor(sink, 8000, pad_ms=250)
    [out] = planner.released([seg], lambda s: words)
    assert sink.masks == [(85_360, 131_600)]  # frames at 8 kHz, end rounded up
    assert (out.entities[0].start_ms, out.entities[0].end_ms) == (10_920, 16_200)
    assert planner.untimed == 0
    planner.released([seg], lambda s: ())  # no word times: the whole utterance
    assert sink.masks[-1] == (80_000, 132_800) and planner.untimed == 1
    planner.progress(20_000, [17_000, 12_500])
    planner.progress(20_000, [])
    assert sink.confirmed == [100_000, 160_000]
    assert planner.unverified([(1000, 2000), (5, 5)]) == [(8000, 16000)]


def test_keypad_star_1_pauses_and_star_2_resumes() -> None:
    keys = DtmfMasker((), (), pause_keys="*1", resume_keys="*2")
    seen = [keys.keyed(k, t) for k, t in [("4", 0), ("*", 100), ("1", 400), ("1", 500),
                                          ("*", 900), ("2", 1200)]]  # fmt: skip
    assert seen == [None, None, "pause", None, None, "resume"]
    assert keys.keyed("*", 2000) is None and keys.keyed("1", 5500) is None  # too slow
    assert DtmfMasker((), (), pause_keys="", resume_keys="").keyed("*", 0) is None
    with pytest.raises(ValueError, match="differ"):
        DtmfMasker((), (), pause_keys="*1", resume_keys="*1")
