"""The audio a live call holds by design (`monitor.runtime.footprint`, RELIABILITY.md L1's
"plus audio buffers"): derived from the settings, and it covers what a real call's core keeps.

A call's sans-I/O core (segmenters, quality trackers, conversation, DNSMOS windows) is fed a
minute of a real simulated call in 20 ms chunks; what it still holds at the end (tracemalloc:
numpy reports its buffers) must fit the allowance's core terms. A buffer that grows with the
call's length, or one the allowance forgot, fails here.
"""

from __future__ import annotations

import json
import tracemalloc

import pytest

from config.settings import Settings, load_settings
from ivr_sim.stream import call_metadata
from monitor.core.analysis import CallAnalyzer
from monitor.core.call_core import CallCore
from monitor.core.metadata import parse_metadata
from monitor.runtime.footprint import call_audio_allowance, call_audio_buffers
from tests.load_support import MiB, fleet

#: The terms the call's core holds (the rest are the shell's: recorder, websocket).
CORE_TERMS = ("segmenter", "utterance", "quality", "dnsmos")


@pytest.mark.parametrize("dnsmos", [False, True])
def test_a_minute_of_a_call_fits_the_allowance(dnsmos: bool) -> None:
    settings = load_settings(env={"CALLWATCH_QUALITY__DNSMOS__ENABLED": str(dnsmos).lower()})
    for call in fleet(2, 60.0):  # 8 kHz and 16 kHz, two parties
        meta = parse_metadata(json.dumps(call_metadata(call, {"callid": "fp"})))
        pcm = call.pcm()
        step = call.sample_rate // 50 * 4
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            analyzer = CallAnalyzer(meta, settings.quality, settings.grading, None, None)
            core = CallCore(meta, settings.vad, analyzer)
            held = []  # each cut utterance, as it waits for its transcript
            for i in range(0, len(pcm) - step + 1, step):
                held = core.feed(pcm[i : i + step]).utterances or held
            kept = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        buffers = call_audio_buffers(settings, call.sample_rate, 2)
        allowed = sum(buffers[k] for k in CORE_TERMS)
        assert kept <= allowed, (call.sample_rate, dnsmos, kept / MiB, allowed / MiB)
        assert (buffers["dnsmos"] > 0) is dnsmos


def test_the_allowance_follows_the_settings() -> None:
    base = call_audio_allowance(Settings(), 16000, 2)
    longer = load_settings(env={"CALLWATCH_VAD__MAX_UTTERANCE_S": "25"})
    # Two parties x (history + one waiting utterance) x 10 s more x 16 kHz x int16.
    assert call_audio_allowance(longer, 16000, 2) - base == pytest.approx(4 * 10 * 32_000, rel=0.01)
    no_dnsmos = load_settings(env={"CALLWATCH_QUALITY__DNSMOS__ENABLED": "false"})
    assert call_audio_allowance(no_dnsmos, 16000, 2) < base
    assert call_audio_allowance(Settings(), 16000, 1) < base
    with pytest.raises(ValueError, match="channels"):
        call_audio_allowance(Settings(), 16000, 3)
