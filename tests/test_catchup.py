"""Deferred utterances re-read from the recording are the very samples the live path cut:
8 kHz calls (up-sampled with the filter started as live) and 16 kHz ones, spans at the very
start of the call and past the end of the recording; and the span list is bounded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from config.settings import Settings
from ivr_sim.stream import call_metadata
from monitor.core.events import Party, UtteranceEnded
from monitor.core.metadata import parse_metadata
from monitor.core.session import CallSession
from monitor.runtime.catchup import DeferredSpans, Span, read_utterances
from storage.recordings import WavRecorder
from tests.runtime_support import script


@pytest.mark.parametrize("name", ["en_billing_8k.toml", "zh_service_16k.toml"])
def test_spans_read_back_equal_the_live_utterances(tmp_path: Path, name: str) -> None:
    call = script(name)
    meta = parse_metadata(json.dumps(call_metadata(call)))
    session = CallSession(meta, Settings().vad)
    pcm = call.pcm()
    live: list[UtteranceEnded] = []
    step = meta.frame_bytes * 160
    for i in range(0, len(pcm), step):  # as it arrives, in 20 ms (8 kHz) chunks
        live += session.feed(pcm[i : i + step])
    live += session.finish()
    assert len(live) >= 4
    path = tmp_path / "call.wav"
    with WavRecorder(path, meta.sample_rate, meta.channels) as rec:
        rec.append(pcm)
        rec.write(rec.drain())
    spans = [Span.of(u) for u in live]
    again = read_utterances(path, spans, meta.channel_of)
    for u, r in zip(live, again, strict=True):
        assert (r.party, r.start_sample, r.end_sample) == (u.party, u.start_sample, u.end_sample)
        assert np.array_equal(r.audio, u.audio), (u.party, u.start_ms)
    # From the first sample, and running past the end of the recording (zeros there).
    end = len(pcm) // meta.frame_bytes * (16000 // meta.sample_rate)
    edge = [
        Span(Party.AGENT, 0, 3200, 0, False),
        Span(Party.CUSTOMER, end - 800, end + 800, 0, False),
    ]
    first, last = read_utterances(path, edge, meta.channel_of)
    assert first.audio.size == 3200 and last.audio.size == 1600
    assert not last.audio[800:].any()


def test_deferred_spans_are_bounded_and_taken_oldest_first() -> None:
    spans = DeferredSpans(limit=2)
    us = [UtteranceEnded(Party.AGENT, i * 100, i * 100 + 50, np.zeros(50, np.int16), 10, False)
          for i in range(3)]  # fmt: skip
    assert spans.add(us[0]) and spans.add(us[1]) and not spans.add(us[2])
    assert (len(spans), spans.total, spans.lost) == (2, 2, 1)
    assert [s.start_sample for s in spans.take(1)] == [0]
    assert [s.start_sample for s in spans.take(5)] == [100] and len(spans) == 0
    with pytest.raises(ValueError, match="limit"):
        DeferredSpans(limit=0)
