"""Dropouts are audio lost inside speech, not digital silence between turns (issue 19 item 1).

Real speech (LJ Speech, Asterisk prompts, AISHELL Mandarin) laid out as a party's channel
with digital-silence pauses of 0.3–2 s, as VoIP silence suppression, a muted line or a
simulator leave them; then the same tracks with 20–200 ms cuts inside voiced speech."""

from __future__ import annotations

import numpy as np
import pytest

from audio_quality.party import PartyQualityTracker
from audio_quality.settings import QualitySettings
from ivr_sim.script import (
    DEMO_COMFORT_NOISE_DBOV,
    ScriptError,
    builtin_scripts,
    load_clip,
    load_script,
    render,
    with_comfort_noise,
)
from tests.dropout_support import cut_track, score_dropouts
from tests.quality_support import SPEECH_DIR, path_files

SETTINGS = QualitySettings(dnsmos={"enabled": False})
ZH = [f"zh/{p.name}" for p in sorted((SPEECH_DIR / "zh").glob("*.flac"))]
VOICES = {"lj": path_files("16k"), "telephone": path_files("8k-ulaw"), "zh": ZH}
PATHS = [(16000, "L16"), (8000, "PCMU")]


@pytest.mark.parametrize(("rate", "codec"), PATHS)
@pytest.mark.parametrize("voice", sorted(VOICES))
def test_digital_silence_between_turns_is_no_dropout(voice: str, rate: int, codec: str) -> None:
    for seed in range(2):
        track = cut_track(VOICES[voice], rate, codec, seed, 30.0, n_cuts=0)
        assert (track.audio == 0).sum() > rate * 3  # seconds of exact zeros between clips
        assert score_dropouts(track, SETTINGS).measured == 0


@pytest.mark.parametrize(("rate", "codec"), PATHS)
@pytest.mark.parametrize("voice", sorted(VOICES))
def test_cuts_inside_speech_are_dropouts(voice: str, rate: int, codec: str) -> None:
    truth = measured = hits = 0
    for seed in range(2):
        track = cut_track(VOICES[voice], rate, codec, seed, 30.0, n_cuts=8)
        s = score_dropouts(track, SETTINGS)
        truth, measured, hits = truth + s.truth, measured + s.measured, hits + s.hits
    assert truth == 16
    assert hits / measured >= 0.9 and hits / truth >= 0.9


def test_dropout_duration_is_measured_to_the_sample() -> None:
    for seed in range(3):
        track = cut_track(VOICES["lj"], 16000, "L16", seed, 30.0, n_cuts=6)
        tr = PartyQualityTracker("agent", 16000, "L16", SETTINGS)
        tr.feed(track.audio)
        s = tr.finish()
        assert s.dropouts == 6
        # To the ms (cuts start anywhere in the 10 ms frame grid).
        assert abs(s.dropout_ms - sum(d for _, d in track.cuts_ms)) <= 6


def test_long_zeros_and_zeros_to_the_end_are_no_dropout() -> None:
    """Zeros longer than `dropout_max_ms` (200 ms) are a mute or a pause whatever their start;
    zeros that run to the end are the call ending."""
    track = cut_track(VOICES["lj"], 16000, "L16", 4, 20.0, n_cuts=2, cut_ms=(150, 150))
    (a, _), (b, _) = track.cuts_ms
    audio = track.audio.copy()
    audio[b * 16 : b * 16 + 16 * 400] = 0  # the second cut becomes a 400 ms mute
    tr = PartyQualityTracker("agent", 16000, "L16", SETTINGS)
    tr.feed(np.concatenate([audio[: (a + 400) * 16], audio[b * 16 : b * 16 + 1600]]))
    tr.feed(audio[b * 16 + 1600 :])
    assert tr.finish().dropouts == 1
    tr = PartyQualityTracker("agent", 16000, "L16", SETTINGS)
    tr.feed(audio[: (a + 50) * 16])  # the call ends inside the first cut
    assert tr.finish().dropouts == 0


def test_dropout_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="dropout_max_ms"):
        QualitySettings(dropout_min_ms=100, dropout_max_ms=50)


@pytest.mark.parametrize("noise_dbov", [None, DEMO_COMFORT_NOISE_DBOV])
def test_simulated_calls_have_no_dropouts(noise_dbov: float | None) -> None:
    """The demo's calls: digital silence between turns (or the comfort-noise floor)."""
    for path in builtin_scripts():
        call = render(load_script(path))
        if noise_dbov is not None:
            call = with_comfort_noise(call, noise_dbov)
        codec = "PCMU" if call.sample_rate == 8000 else "L16"
        for ch in (0, 1):
            tr = PartyQualityTracker("p", call.sample_rate, codec, SETTINGS)
            tr.feed(np.ascontiguousarray(call.audio[:, ch]))
            s = tr.finish()
            assert s.dropouts == 0, (path.name, ch)
            if noise_dbov is not None:
                frames = call.audio[: call.audio.shape[0] // 80 * 80, ch].reshape(-1, 80)
                assert frames.any(axis=1).all()  # no exact-zero 10 ms frame is left
                assert s.noise_level_dbov is not None
                assert abs(s.noise_level_dbov - noise_dbov) < 8


def test_comfort_noise_is_seeded_and_checked() -> None:
    call = render(load_script(builtin_scripts()[0]))
    a, b = with_comfort_noise(call, -65.0, seed=1), with_comfort_noise(call, -65.0, seed=1)
    assert np.array_equal(a.audio, b.audio) and not np.array_equal(a.audio, call.audio)
    rms = float(np.sqrt(np.mean((a.audio.astype(float) - call.audio) ** 2)))
    assert abs(20 * np.log10(rms / 32768) + 65) < 0.5
    with pytest.raises(ScriptError, match="comfort noise"):
        with_comfort_noise(call, 0.0)


@pytest.mark.parametrize(("rate", "codec"), PATHS)
def test_tts_phrase_breaks_are_no_dropout(rate: int, codec: str) -> None:
    """Synthetic service-script lines break phrases with exact zeros, some as abruptly as a
    cut but 240 ms and longer: no dropout (the held-out Mandarin calls are built from them)."""
    clips = sorted((SPEECH_DIR.parent / "tts").glob("*/*.flac"))
    assert len(clips) >= 10
    for clip in clips:
        x = load_clip(clip, rate)
        pad = np.zeros(rate // 2, dtype=np.int16)
        tr = PartyQualityTracker("agent", rate, codec, SETTINGS)
        tr.feed(np.concatenate([pad, x, pad, x, pad]))
        assert tr.finish().dropouts == 0, clip.name
