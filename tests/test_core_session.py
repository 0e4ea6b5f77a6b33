"""Call session core: resampling and segmentation are chunk-invariant, on real speech."""

from __future__ import annotations

import functools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asr.settings import VadSettings
from audio_quality.resample import Upsampler2x
from ivr_sim.script import builtin_scripts, load_script, render
from monitor.core.events import Party
from monitor.core.segmenter import UtteranceSegmenter
from monitor.core.session import CallSession
from monitor.wire.audiofork import AudioForkDecoder, AudioForkEncoder
from monitor.wire.events import FramesReceived


@functools.cache
def call_8k():  # type: ignore[no-untyped-def]
    path = next(p for p in builtin_scripts() if p.name == "en_billing_8k.toml")
    return render(load_script(path))


def run_wire(pcm: bytes, sizes: list[int]) -> tuple[bytes, list[tuple[str, int, int]]]:
    """Decoder + session over the given message sizes: what is recorded, which utterances."""
    dec = AudioForkDecoder()
    (meta,) = dec.receive_text(AudioForkEncoder.metadata({"sampleRate": 8000, "channels": 2}))
    session = CallSession(meta.metadata, VadSettings())  # type: ignore[union-attr]
    recorded, utts = bytearray(), []
    pos = 0
    cuts = [*sizes, len(pcm)]
    for size in cuts:
        piece = pcm[pos : pos + size]
        pos += size
        for ev in dec.receive_bytes(piece) if piece else []:
            assert isinstance(ev, FramesReceived)
            recorded += ev.pcm
            utts += session.feed(ev.pcm)
        if pos >= len(pcm):
            break
    utts += session.finish()
    return bytes(recorded), [(u.party.value, u.start_sample, u.end_sample) for u in utts]


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=9000), min_size=1, max_size=60))
def test_random_frame_sizes_give_same_recording_and_utterances(sizes: list[int]) -> None:
    call = call_8k()
    pcm = call.pcm()
    ref_rec, ref_utts = run_wire(pcm, [640] * (len(pcm) // 640 + 1))
    rec, utts = run_wire(pcm, sizes)
    assert rec == ref_rec == pcm  # every sample received is recorded, exactly
    assert utts == ref_utts


def test_utterances_follow_the_script_turns() -> None:
    call = call_8k()
    _, utts = run_wire(call.pcm(), [640] * (len(call.pcm()) // 640 + 1))
    for party in ("customer", "agent"):
        turns = [t for t in call.turns if t.party == party]
        found = [(s / 16000, e / 16000) for p, s, e in utts if p == party]
        # Every turn is covered by at least one utterance, and no utterance is outside turns.
        for t in turns:
            assert any(s <= t.start_s + 0.3 and e >= t.end_s - 0.3 for s, e in found) or any(
                s < t.end_s and e > t.start_s for s, e in found
            ), (party, t)
        for s, e in found:
            assert any(s < t.end_s + 0.3 and e > t.start_s - 0.3 for t in turns), (party, s, e)


def test_upsampler_is_chunk_invariant_and_keeps_the_signal() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(8000) / 8000
    x = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    whole = Upsampler2x().process(x)
    up, parts, i = Upsampler2x(), [], 0
    while i < x.size:
        n = int(rng.integers(1, 700))
        parts.append(up.process(x[i : i + n]))
        i += n
    assert np.array_equal(np.concatenate(parts), whole)
    assert whole.size == 2 * x.size
    # A 440 Hz tone keeps its level (within 0.1 dB) and frequency after up-sampling.
    spec = np.abs(np.fft.rfft(whole[1000:].astype(float)))
    assert abs(np.argmax(spec) * 16000 / (whole.size - 1000) - 440) < 2

    def rms(a: np.ndarray) -> float:
        return float(np.sqrt(np.mean(a.astype(float) ** 2)))

    ratio = rms(whole[1000:]) / rms(x)
    assert abs(20 * np.log10(ratio)) < 0.1


def test_long_speech_is_capped_and_silence_yields_nothing() -> None:
    vad = VadSettings(max_utterance_s=3.0)
    seg = UtteranceSegmenter(Party.AGENT, vad)
    call = call_8k()
    speech = Upsampler2x().process(np.ascontiguousarray(call.audio[:, 1]))
    # Glue the agent's speech back to back, removing pauses: one long stretch of talk.
    voiced = speech[np.abs(speech) > 200]
    utts = seg.feed(voiced) + seg.finish()
    assert len(utts) >= 3
    assert all(u.end_sample - u.start_sample <= 3 * 16000 for u in utts)
    assert any(u.capped for u in utts)
    # Consecutive capped pieces tile the speech without gaps or overlaps.
    for a, b in zip(utts, utts[1:], strict=False):
        if a.capped:
            assert b.start_sample == a.end_sample
    quiet = UtteranceSegmenter(Party.CUSTOMER, vad)
    assert quiet.feed(np.zeros(16000 * 5, dtype=np.int16)) + quiet.finish() == []
