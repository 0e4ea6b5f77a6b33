"""The codecs' session state machines under random message sequences (RELIABILITY.md §10 F1).

For each protocol, Hypothesis mixes the messages of a real session (made by the codec's own
encoder: the fuzzing seed corpus, tests/fuzz/wire_target.py), in any order and repeated, with
arbitrary text and binary frames. Every message must give typed events or a `ProtocolError`
with a close code (`tests/wire_support.feed_random`), and the session's invariants hold: no
audio before the call has started, none after it stopped. 1,000 examples per codec on every
commit; 10,000 in the `long` run (`scripts/test --long`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.wire.events import CallStarted, FramesReceived, PartyAudio, Stopped
from tests.fuzz import wire_target
from tests.wire_support import feed_random

SEEDS = Path(__file__).parent / "data/fuzz/wire"
CODECS = ["audiofork", "twilio", "audiohook", "audiosocket"]
#: What opens a session: AudioSocket's is its UUID message (a LegIdentified event).
OPENED = {"audiosocket": "LegIdentified"}


def _session(codec: str) -> list[str | bytes]:
    return wire_target.messages((SEEDS / f"seed-{codec}").read_bytes())


def _sequences(codec: str) -> st.SearchStrategy[list[str | bytes]]:
    valid = st.sampled_from(_session(codec))
    junk: st.SearchStrategy[str | bytes] = (
        st.binary(max_size=64) if codec == "audiosocket"
        else st.one_of(st.text(max_size=60), st.binary(max_size=60))
    )  # fmt: skip
    return st.lists(st.one_of(valid, valid, junk), max_size=12)


def _check(codec: str, messages: list[str | bytes]) -> None:
    dec = wire_target.DECODERS[CODECS.index(codec)]()
    if codec == "audiosocket":  # a byte stream: text frames do not exist
        messages = [m for m in messages if isinstance(m, bytes)]
    started = stopped = False
    for ev in feed_random(dec, messages):
        if isinstance(ev, CallStarted) or type(ev).__name__ == OPENED.get(codec):
            started = True
        elif isinstance(ev, Stopped):
            stopped = True
        elif isinstance(ev, PartyAudio | FramesReceived):
            assert started and not stopped, (codec, ev)


def _run(codec: str, examples: int) -> None:
    @settings(max_examples=examples, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(_sequences(codec))
    def check(messages: list[Any]) -> None:
        _check(codec, messages)

    check()


@pytest.mark.parametrize("codec", CODECS)
def test_no_audio_outside_a_session(codec: str) -> None:
    _run(codec, 1_000)


@pytest.mark.long
@pytest.mark.parametrize("codec", CODECS)
def test_no_audio_outside_a_session_10000(codec: str) -> None:
    _run(codec, 10_000)
