"""The call core (sans-I/O): one de-interleave feeds the segmenters and the analysis, which
learns itself who is speaking and which utterances wait for a transcript; the output is what
the two cores gave when the shell carried that between them. Markers are parsed once."""

from __future__ import annotations

import functools
from typing import Any

import pytest

from asr.settings import VadSettings
from audio_quality.settings import QualitySettings
from config.settings import GradingSettings
from ivr_sim.script import RenderedCall, builtin_scripts, load_script, render
from monitor.core.analysis import CallAnalyzer
from monitor.core.call_core import CallCore, utterance_key
from monitor.core.markers import Marker, MarkerKind, parse_marker
from monitor.core.metadata import CallMetadata, parse_metadata
from monitor.core.session import CallSession
from monitor.qa import load_compliance_scripts

QUALITY = QualitySettings(dnsmos={"enabled": False})


@functools.cache
def call_8k() -> RenderedCall:
    path = next(p for p in builtin_scripts() if p.name == "en_billing_8k.toml")
    return render(load_script(path))


def analyzer(meta: CallMetadata) -> CallAnalyzer:
    return CallAnalyzer(meta, QUALITY, GradingSettings(), load_compliance_scripts(), "en")


def test_one_core_gives_what_the_two_cores_gave() -> None:
    meta = parse_metadata('{"callid":"c","sampleRate":8000,"channels":2}')
    pcm = call_8k().pcm()
    core = CallCore(meta, VadSettings(), analyzer(meta))
    session, old = CallSession(meta, VadSettings()), analyzer(meta)
    got: list[Any] = []
    want: list[Any] = []
    step = 8000 * 4 // 5  # 200 ms of stereo
    for i in range(0, len(pcm), step):
        fed = core.feed(pcm[i : i + step])
        got += [("u", u.party, u.start_ms, u.end_ms) for u in fed.utterances] + fed.found
        # What LiveCall did before: the shell queued, computed `speaking`, fed twice.
        utterances = session.feed(pcm[i : i + step])
        for u in utterances:
            old.utterance_queued(utterance_key(u), u.start_ms)
        speaking = {p.value: leg.segmenter.in_speech for p, leg in session.legs.items()}
        want += [("u", u.party, u.start_ms, u.end_ms) for u in utterances]
        want += old.feed(pcm[i : i + step], speaking)
    last = core.finish()
    assert [(u.party, u.start_ms) for u in last] == [
        (u.party, u.start_ms) for u in session.finish()
    ]
    assert got == want and any(e[0] == "u" for e in got if isinstance(e, tuple))
    assert core.duration_ms == session.duration_ms == round(call_8k().duration_s * 1000)


def test_feeding_part_of_a_frame_is_refused() -> None:
    meta = parse_metadata('{"callid":"c","sampleRate":8000,"channels":2}')
    with pytest.raises(ValueError, match="whole frames"):
        CallCore(meta, VadSettings()).feed(b"\x00\x00")


@pytest.mark.parametrize(
    ("payload", "now", "want"),
    [
        ({"event": "hold"}, 500, Marker(MarkerKind.HOLD_STARTED, "hold", 500, 500)),
        ({"type": "off_hold"}, 900, Marker(MarkerKind.HOLD_ENDED, "off_hold", 900, 900)),
        ({"event": "prompt_start"}, 5, Marker(MarkerKind.IVR_PROMPT_STARTED, "prompt_start", 5, 5)),
        ({"event": "ivr_prompt", "start_ms": 100, "end_ms": 900, "prompt": "menu"}, 1000,
         Marker(MarkerKind.IVR_PROMPT, "ivr_prompt", 100, 900, {"prompt": "menu"})),
        ({"event": "ivr_prompt", "duration_ms": 300}, 1000,
         Marker(MarkerKind.IVR_PROMPT, "ivr_prompt", 1000, 1300)),
        ({"event": "ivr_prompt", "prompt": "menu"}, 1000,
         Marker(MarkerKind.IVR_PROMPT, "ivr_prompt", extra={"prompt": "menu"})),
        ({"event": "pause_recording", "by": "x"}, 7,
         Marker(MarkerKind.CAPTURE_PAUSED, "pause_recording", 7, 7)),
        ({"event": "transfer"}, 1, None),
        ({"event": 5}, 1, None),
        ("hold", 1, None),
    ],
)  # fmt: skip
def test_markers_are_parsed_once_into_types(payload: Any, now: int, want: Marker | None) -> None:
    assert parse_marker(payload, now) == want


@pytest.mark.parametrize(
    "bad", [{"end_ms": "soon"}, {"start_ms": 0, "duration_ms": -1}, {"end_ms": float("inf")}]
)
def test_a_prompt_with_an_unreadable_span_is_invalid_not_applied(bad: dict[str, Any]) -> None:
    marker = parse_marker({"event": "ivr_prompt", **bad}, 10)
    assert marker is not None and marker.kind is MarkerKind.INVALID
    assert marker.problem is not None and marker.problem.startswith("ivr_prompt: ")
    meta = parse_metadata('{"callid":"c","sampleRate":8000,"channels":2}')
    core = CallCore(meta, VadSettings(), analyzer(meta))
    assert core.apply(marker) is False
    assert core.apply(Marker(MarkerKind.HOLD_STARTED, "hold", 0, 0)) is True
    core.feed(bytes(8000 * 4 * 3))  # 3 s on hold
    core.apply(Marker(MarkerKind.HOLD_ENDED, "unhold", 3000, 3000))
    assert core.analyzer is not None
    core.analyzer.flush()
    assert core.analyzer.conversation.finish().hold_ms == 3000  # the core told the analysis
