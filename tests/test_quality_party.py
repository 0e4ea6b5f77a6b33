"""PartyQualityTracker: cadence, activity, dropouts, missing media, lifecycle, settings."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from audio_quality.errors import TrackerFinishedError
from audio_quality.party import PartyQualityTracker
from audio_quality.settings import QualitySettings
from tests.quality_support import merge_spans, mix_at_snr, path_files, speech_track

SETTINGS = QualitySettings(dnsmos={"enabled": False})


@pytest.fixture(scope="module")
def call_audio() -> np.ndarray:
    speech = speech_track(path_files("8k-ulaw"), 8000, 3, 21.0, (0.8, 2.5))
    return mix_at_snr(speech, "bike", 25, 8000, "PCMU").audio


def feed_all(tr: PartyQualityTracker, audio: np.ndarray, chunk: int = 160):
    readings, spans = [], []
    for i in range(0, audio.size, chunk):
        readings += tr.feed(audio[i : i + chunk])
        spans += tr.take_activity()
    readings += tr.flush()
    spans += tr.take_activity()
    return readings, spans


def test_readings_at_fixed_cadence_with_rolling_window(call_audio: np.ndarray) -> None:
    tr = PartyQualityTracker("customer", 8000, "PCMU", SETTINGS)
    readings, spans = feed_all(tr, call_audio)
    assert [(r.start_ms, r.end_ms) for r in readings] == [
        (t, min(t + 2000, 21_000)) for t in range(0, 21_000, 2000)
    ]
    assert [r.seq for r in readings] == list(range(len(readings)))
    late = readings[-2]
    assert late.window_start_ms == late.end_ms - 10_000
    assert late.snr_db == pytest.approx(25, abs=3)
    assert late.noise_level_dbov is not None and late.speech_level_dbov is not None
    # Activity tiles the media time exactly, and agrees with the readings' speech time.
    assert spans[0].start_ms == 0 and spans[-1].end_ms == 21_000
    assert all(a.end_ms == b.start_ms for a, b in zip(spans, spans[1:], strict=False))
    speech_ms = sum(s.end_ms - s.start_ms for s in spans if s.speech)
    assert speech_ms == sum(r.speech_ms for r in readings)
    s = tr.finish()
    assert s.speech_ms == speech_ms and s.readings == len(readings)
    assert (s.sample_rate_hz, s.codec, s.duration_ms) == (8000, "PCMU", 21_000)
    assert s.snr_min_db is not None and s.snr_min_db <= s.snr_db + 3  # type: ignore[operator]


def test_dropouts_inside_speech_and_missing_media(call_audio: np.ndarray) -> None:
    audio = call_audio.copy()
    spans = merge_spans(feed_all(PartyQualityTracker("agent", 8000, "PCMU", SETTINGS), audio)[1])
    talk = [s for s in spans if s.speech and s.end_ms - s.start_ms > 1500]
    mid = (talk[0].start_ms + talk[0].end_ms) // 2 * 8  # a sample in the middle of a turn
    audio[mid : mid + 8 * 60] = 0  # 60 ms of digital silence in speech
    silent = [s for s in spans if not s.speech and s.end_ms - s.start_ms > 1000][0]
    q = (silent.start_ms + 300) * 8
    audio[q : q + 8 * 60] = 0  # ... and in a pause: not a dropout
    tr = PartyQualityTracker("agent", 8000, "PCMU", SETTINGS)
    cut = talk[1].start_ms * 8 + 4000  # half a second into another turn
    readings = tr.feed(audio[:cut]) + tr.feed_missing(8 * 100) + tr.feed(audio[cut:])
    readings += tr.flush()
    s = tr.finish()
    assert s.dropouts == 2  # the zeros in the turn and the 100 ms gap in the other
    assert 150 <= s.dropout_ms <= 190
    assert s.missing_ms == 100 and sum(r.missing_ms for r in readings) == 100
    assert s.duration_ms == 21_100


def test_lifecycle_and_input_checks() -> None:
    tr = PartyQualityTracker("agent", 16000, "L16", SETTINGS)
    with pytest.raises(ValueError, match="int16"):
        tr.feed(np.zeros(10, dtype=np.float32))  # type: ignore[arg-type]
    assert tr.feed(np.zeros(100, dtype=np.int16)) == []
    tr.finish()
    with pytest.raises(TrackerFinishedError):
        tr.feed(np.zeros(10, dtype=np.int16))
    with pytest.raises(TrackerFinishedError):
        tr.finish()
    with pytest.raises(ValueError, match="sample_rate"):
        PartyQualityTracker("agent", 44100, "L16", SETTINGS)
    with pytest.raises(ValueError, match="codec"):
        PartyQualityTracker("agent", 8000, "G729", SETTINGS)


def test_digital_silence_call_reports_nothing_measurable() -> None:
    tr = PartyQualityTracker("agent", 8000, "PCMA", SETTINGS)
    readings, spans = feed_all(tr, np.zeros(8000 * 5, dtype=np.int16))
    s = tr.finish()
    assert all(not sp.speech for sp in spans)
    assert s.speech_ms == 0 and s.speech_level_dbov is None and s.snr_db is None
    assert s.dropouts == 0 and s.clipped_samples == 0
    assert readings[-1].rms_dbov < -140


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="reading_window_ms"):
        QualitySettings(reading_interval_ms=2000, reading_window_ms=5000)
    with pytest.raises(ValidationError, match="pad_ms"):
        QualitySettings(vad={"pad_ms": 150, "min_silence_ms": 250})
    with pytest.raises(ValidationError, match="continue_db"):
        QualitySettings(vad={"threshold_db": 6, "continue_db": 8})
    with pytest.raises(ValidationError, match="extra"):
        QualitySettings(cadence_ms=1000)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="excellent_min"):
        QualitySettings(score={"excellent_min": 50, "good_min": 70})
    assert QualitySettings().reading_interval_ms <= 2000
    assert hash(QualitySettings()) == hash(QualitySettings())  # frozen all the way down
