"""DNSMOS P.835: our scorer on the `speechmos` ONNX model, the window rules, and validation
that BAK and OVRL rank real speech in real noise by SNR on both paths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from audio_quality.dnsmos import (
    WINDOW_SAMPLES,
    DnsmosScorer,
    DnsmosWindow,
    default_model_path,
)
from audio_quality.errors import DnsmosModelError
from audio_quality.party import PartyQualityTracker
from audio_quality.settings import QualitySettings
from tests.quality_support import PATHS, mix_at_snr, path_files, speech_track

#: Every window scored, whatever its speech share: the ranking test wants all of them.
ALL_WINDOWS = QualitySettings(dnsmos={"min_speech_ratio": 0.0})


@pytest.fixture(scope="module")
def scorer() -> DnsmosScorer:
    return DnsmosScorer()


def windows_of(audio: np.ndarray, rate: int, codec: str, settings: QualitySettings):
    tr = PartyQualityTracker("customer", rate, codec, settings)
    for i in range(0, audio.size, rate // 50):  # 20 ms chunks, as they arrive
        tr.feed(audio[i : i + rate // 50])
    tr.flush()
    return tr, tr.take_dnsmos_windows()


@pytest.mark.parametrize("path", list(PATHS))
def test_bak_and_ovrl_are_ordered_by_snr(path: str, scorer: DnsmosScorer) -> None:
    rate, codec = PATHS[path]
    speech = speech_track(path_files(path), rate, 3, 9.1, (0.3, 0.6))
    snrs = (0, 10, 20, 30)
    table: dict[int, list[tuple[float, float]]] = {s: [] for s in snrs}
    batch: list[tuple[int, DnsmosWindow]] = []
    for noise in ("dishes", "babble"):
        for snr in snrs:
            mix = mix_at_snr(speech, noise, snr, rate, codec, seed=0)
            _, wins = windows_of(mix.audio, rate, codec, ALL_WINDOWS)
            assert len(wins) == 1
            batch.append((snr, wins[0]))
    # One batch across "calls": the way the runtime shares the model.
    for (snr, _), score in zip(batch, scorer.score_batch([w for _, w in batch]), strict=True):
        assert score.source_sample_rate_hz == rate and score.codec == codec
        table[snr].append((score.bak_mos, score.ovrl_mos))
    bak = [float(np.mean([b for b, _ in table[s]])) for s in snrs]
    ovrl = [float(np.mean([o for _, o in table[s]])) for s in snrs]
    print(f"DNSMOS {path}: BAK {np.round(bak, 2)}, OVRL {np.round(ovrl, 2)} at SNR {snrs}")
    assert all(a < b for a, b in zip(bak, bak[1:], strict=False))
    assert all(a < b for a, b in zip(ovrl, ovrl[1:], strict=False))


def test_windows_are_whole_non_overlapping_and_labelled() -> None:
    rate, codec = 8000, "PCMU"
    speech = speech_track(path_files("8k-ulaw"), rate, 1, 20.0, (0.3, 0.8))
    tr, wins = windows_of(mix_at_snr(speech, "bike", 20, rate, codec).audio, rate, codec,
                          ALL_WINDOWS)  # fmt: skip
    # 20 s gives two whole 9.01 s windows; the 1.98 s left over is never padded or tiled.
    assert [(w.seq, w.start_ms, w.end_ms) for w in wins] == [(0, 0, 9010), (1, 9010, 18020)]
    for w in wins:
        assert w.samples.shape == (WINDOW_SAMPLES,) and w.samples.dtype == np.float32
        assert np.abs(w.samples).max() <= 1.0
        assert (w.source_sample_rate_hz, w.codec, w.party) == (8000, "PCMU", "customer")
        assert 0.3 < w.speech_ratio <= 1.0
    assert tr.finish().dnsmos_windows_skipped == 0


def test_silent_windows_are_skipped_and_queue_is_bounded() -> None:
    settings = QualitySettings(dnsmos={"max_pending_windows": 1})
    rate = 16000
    tr = PartyQualityTracker("agent", rate, "L16", settings)
    tr.feed(np.zeros(rate * 10, dtype=np.int16))  # a listener's silent channel
    speech = speech_track(path_files("16k"), rate, 1, 19.0, (0.2, 0.4))
    tr.feed(mix_at_snr(speech, "bike", 25, rate, "L16").audio)
    tr.flush()
    wins = tr.take_dnsmos_windows()
    s = tr.finish()
    assert s.dnsmos_windows_skipped == 1  # the silent one
    assert len(wins) == 1 and s.dnsmos_windows_dropped == 1  # the queue held only one


def test_scores_are_deterministic_and_batch_independent(scorer: DnsmosScorer) -> None:
    rng = np.random.default_rng(0)
    speech = speech_track(path_files("16k"), 16000, 0, 9.01, (0.2, 0.3))[:WINDOW_SAMPLES]
    a = (speech / 32768.0).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.01, a.size).astype(np.float32), -1, 1)
    one = scorer.score_raw(a[None, :])
    again = scorer.score_raw(a[None, :])
    both = scorer.score_raw(np.stack([a, b]))
    assert np.array_equal(one, again)  # bit-exact repeat (pin onnxruntime to keep it)
    np.testing.assert_allclose(both[0], one[0], atol=1e-4)
    assert both.shape == (2, 3) and (both > 1.0).all() and (both < 5.0).all()


def test_tracker_summary_takes_the_scores(scorer: DnsmosScorer) -> None:
    rate = 16000
    speech = speech_track(path_files("16k"), rate, 2, 19.0, (0.3, 0.6))
    tr, wins = windows_of(mix_at_snr(speech, "bike", 20, rate, "L16").audio, rate, "L16",
                          QualitySettings())  # fmt: skip
    scores = scorer.score_batch(wins)
    for sc in scores:
        tr.add_dnsmos(sc)
    s = tr.finish()
    assert s.dnsmos_windows_scored == len(wins) == 2
    assert s.dnsmos_ovrl_mean == pytest.approx(np.mean([x.ovrl_mos for x in scores]))
    assert s.dnsmos_ovrl_min == min(x.ovrl_mos for x in scores)
    assert s.dnsmos_model_sample_rate_hz == 16000


def test_scorer_rejects_bad_input_and_missing_model(tmp_path: Path, scorer: DnsmosScorer) -> None:
    with pytest.raises(ValueError, match="shape"):
        scorer.score_raw(np.zeros((1, 16000), dtype=np.float32))
    assert scorer.score_batch([]) == []
    with pytest.raises(DnsmosModelError, match="not found"):
        DnsmosScorer(model_path=tmp_path / "missing.onnx")
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(DnsmosModelError, match="cannot load"):
        DnsmosScorer(model_path=tmp_path / "bad.onnx")
    assert default_model_path().name == "sig_bak_ovr.onnx"


def test_readings_carry_the_latest_clarity_for_live_meters(scorer: DnsmosScorer) -> None:
    """Live boards show clarity from the readings: None until a window is scored, then the
    latest OVRL, so a meter follows the call instead of waiting for the end-of-call summary."""
    rate = 16000
    speech = speech_track(path_files("16k"), rate, 2, 19.0, (0.3, 0.6))
    audio = mix_at_snr(speech, "bike", 20, rate, "L16").audio
    tr = PartyQualityTracker("agent", rate, "L16", QualitySettings())
    half = audio.size * 2 // 3  # one 9 s window is complete by then
    before = tr.feed(audio[:half])
    assert before and all(r.dnsmos_ovrl is None for r in before)
    scores = scorer.score_batch(tr.take_dnsmos_windows())
    assert scores
    for sc in scores:
        tr.add_dnsmos(sc)
    after = tr.feed(audio[half:]) + tr.flush()
    assert after and all(r.dnsmos_ovrl == scores[-1].ovrl_mos for r in after)


def test_no_window_overlaps_a_capture_pause() -> None:
    """RELIABILITY P1: DNSMOS never scores paused audio. A 40 s call of real speech paused
    (PCI) from 7.0 s to 12.5 s, zeros in the pause as the live call feeds them: the windows
    touching the pause (0 and 1) are not scored, the others are; without the pause marks the
    same audio would have had windows 0 and 1 scored (the default speech-share rule alone
    does not keep them out)."""
    rate = 8000
    speech = speech_track(path_files("8k-ulaw"), rate, 2, 40.0, (0.3, 0.8))
    audio = mix_at_snr(speech, "bike", 25, rate, "PCMU").audio.copy()
    pause = (7000, 12_500)
    audio[pause[0] * rate // 1000 : pause[1] * rate // 1000] = 0

    def scored(marks: bool) -> list[tuple[int, int]]:
        tr = PartyQualityTracker("customer", rate, "PCMU", QualitySettings())
        step, wins = rate // 50, []
        for i in range(0, audio.size, step):
            ms = i * 1000 // rate
            if marks and ms == pause[0]:
                tr.capture_paused(ms)
            if marks and ms == pause[1]:
                tr.capture_resumed(ms)
            tr.feed(audio[i : i + step])
            wins += tr.take_dnsmos_windows()  # as the live call takes them
        tr.flush()
        return [(w.start_ms, w.end_ms) for w in wins + tr.take_dnsmos_windows()]

    unmarked, marked = scored(False), scored(True)
    assert (0, 9010) in unmarked and (9010, 18020) in unmarked
    assert marked and all(end <= pause[0] or start >= pause[1] for start, end in marked)
    assert marked == [w for w in unmarked if w[0] >= pause[1]]
