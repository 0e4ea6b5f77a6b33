"""Property: readings, activity, DNSMOS windows and summaries do not depend on chunking.

The same audio fed in any chunk sizes (1 sample up to seconds, mixed), with the tracker's
analysis batches at any phase, must give bit-identical results, and the conversation tracker
must give the same events however the spans are grouped.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audio_quality.conversation import ConversationTracker
from audio_quality.g711 import round_trip
from audio_quality.impair import hard_clip_to_ratio, to_int16
from audio_quality.party import PartyQualityTracker
from audio_quality.records import ActivitySpan
from audio_quality.settings import QualitySettings
from tests.quality_support import merge_spans, mix_at_snr, path_files, speech_track

SETTINGS = QualitySettings()


@functools.lru_cache(maxsize=2)
def hard_audio(rate: int) -> bytes:
    """12 s with speech in noise, a clipped stretch, a dropout inside speech and digital
    silence: every feature has something to measure."""
    codec = "PCMU" if rate == 8000 else "L16"
    speech = speech_track(path_files("16k" if rate == 16000 else "8k-ulaw"), rate, 7, 12.0,
                          (0.4, 1.5))  # fmt: skip
    audio = mix_at_snr(speech, "dishes", 15, rate, codec).audio.astype(np.float64)
    a, b = 3 * rate, 5 * rate
    audio[a:b] = hard_clip_to_ratio(audio[a:b], 0.01, 32767.0)
    loud = int(np.argmax(np.abs(audio[6 * rate : 8 * rate]))) + 6 * rate
    audio[loud : loud + rate // 20] = 0.0  # 50 ms dropout in speech
    audio[-rate:] = 0.0
    return round_trip(to_int16(audio), codec).tobytes()


#: The switch's hold markers (media ms): the call goes on hold at 4 s, off it at 9 s.
MARKS_MS = (4000, 9000)


def run(audio: np.ndarray, rate: int, cuts: list[int], marks_ahead: bool = False,
        phase: float = 0.0):  # fmt: skip
    """Feed `audio` cut at `cuts`; the hold markers come in when the audio reaches them
    (as the runtime passes them on), or all before any audio with `marks_ahead`. `phase`:
    the tracker's analysis-batch phase (the server staggers its calls')."""
    codec = "PCMU" if rate == 8000 else "L16"
    tr = PartyQualityTracker("agent", rate, codec, SETTINGS, batch_phase=phase)
    readings, activity, windows = [], [], []
    marks = {ms * rate // 1000: ms for ms in MARKS_MS}
    if marks_ahead:
        for ms in MARKS_MS:
            tr.mark_state_change(ms)
        marks = {}
    edges = [0, *sorted(set(cuts) | set(marks)), audio.size]
    for a, b in zip(edges, edges[1:], strict=False):
        if a in marks:
            tr.mark_state_change(marks[a])
        readings += tr.feed(audio[a:b])
        activity += tr.take_activity()
        windows += tr.take_dnsmos_windows()
    readings += tr.flush()
    activity += tr.take_activity()
    windows += tr.take_dnsmos_windows()
    return readings, merge_spans(activity), windows, tr.finish()


@functools.lru_cache(maxsize=2)
def reference(rate: int):
    audio = np.frombuffer(hard_audio(rate), dtype=np.int16)
    return run(audio, rate, [], marks_ahead=True)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=st.sampled_from([8000, 16000]), data=st.data())
def test_readings_do_not_depend_on_chunking(rate: int, data: st.DataObject) -> None:
    audio = np.frombuffer(hard_audio(rate), dtype=np.int16)
    sizes = data.draw(
        st.lists(st.integers(1, rate * 2), min_size=1, max_size=60), label="chunk sizes"
    )
    cuts = list(np.cumsum(sizes)[np.cumsum(sizes) < audio.size])
    phase = data.draw(st.floats(0.0, 0.999), label="batch phase")
    readings, activity, windows, summary = run(audio, rate, cuts, phase=phase)
    ref_readings, ref_activity, ref_windows, ref_summary = reference(rate)
    assert readings == ref_readings
    assert activity == ref_activity
    assert summary == ref_summary
    assert len(windows) == len(ref_windows) == 1
    assert np.array_equal(windows[0].samples, ref_windows[0].samples)
    # The fixture exercises what it claims to.
    assert ref_summary.clipped_samples > 0 and ref_summary.dropouts >= 1
    assert ref_readings[-1].end_ms == audio.size * 1000 // rate
    if rate == 16000:  # the hold markers split a stretch there (at 4 s)
        unmarked = PartyQualityTracker("agent", rate, "L16", SETTINGS)
        unmarked.feed(audio)
        unmarked.flush()
        assert merge_spans(unmarked.take_activity()) != ref_activity


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_conversation_events_do_not_depend_on_span_grouping(data: st.DataObject) -> None:
    _, agent, _, _ = reference(16000)
    customer = shifted_customer(agent)
    whole = ConversationTracker(SETTINGS)
    ref = whole.add_activity(agent) + whole.add_activity(customer) + whole.flush()
    ref_summary = whole.finish()
    # Split every span at random points and interleave the parties in random order.
    pieces = []
    for s in agent + customer:
        cut = data.draw(st.integers(s.start_ms, s.end_ms), label="split")
        cut -= cut % 10
        if s.start_ms < cut < s.end_ms:
            pieces += [replace(s, end_ms=cut), replace(s, start_ms=cut)]
        else:
            pieces.append(s)
    order = data.draw(st.permutations(range(len(pieces))), label="order")
    conv = ConversationTracker(SETTINGS)
    queues = {"agent": [p for p in pieces if p.party == "agent"],
              "customer": [p for p in pieces if p.party == "customer"]}  # fmt: skip
    events = []
    for i in order:  # the parties' streams interleave arbitrarily; each stays in order
        party = pieces[i].party
        if queues[party]:
            events += conv.add_activity([queues[party].pop(0)])
    events += conv.add_activity(queues["agent"] + queues["customer"]) + conv.flush()
    assert events == ref
    assert conv.finish() == ref_summary


def shifted_customer(spans: list[ActivitySpan]) -> list[ActivitySpan]:
    """The agent's activity shifted by 1.5 s: a second party that overlaps and leaves gaps."""
    end = spans[-1].end_ms
    out = [ActivitySpan("customer", 0, 1500, False)]
    out += [replace(s, party="customer", start_ms=s.start_ms + 1500, end_ms=s.end_ms + 1500)
            for s in spans]  # fmt: skip
    return [replace(s, end_ms=min(s.end_ms, end)) for s in out if s.start_ms < end]
