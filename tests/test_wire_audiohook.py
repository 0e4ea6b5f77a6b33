"""Genesys AudioHook codec: the documented example exchange (PROTOCOLS.md §5.5) - open/opened
with the stereo PCMU offer, ping/pong, close/closed with seq/clientseq bookkeeping - plus
pause/resume re-alignment, lost-media fill from `position`, the simulator's encoder, fuzzing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_quality.g711 import ulaw_decode, ulaw_encode
from monitor.core.events import Party
from monitor.errors import ProtocolError
from monitor.wire.audiohook import AudioHookDecoder, AudioHookEncoder, choose_offer
from monitor.wire.events import (
    AppEvent,
    CallStarted,
    FramesReceived,
    Paused,
    Reply,
    Resumed,
    Stopped,
)
from tests.wire_support import feed_random, json_values

OPEN = (
    '{"version":"2","type":"open","seq":1,"serverseq":0,"position":"PT0S","id":"5a0f",'
    '"parameters":{"organizationId":"d7934","conversationId":"090eaa2f","participant":'
    '{"id":"883efee8","ani":"+8613800138000","aniName":"","dnis":"+864008001234"},"media":'
    '[{"type":"audio","format":"PCMU","channels":["external","internal"],"rate":8000},'
    '{"type":"audio","format":"PCMU","channels":["external"],"rate":8000},'
    '{"type":"audio","format":"PCMU","channels":["internal"],"rate":8000}],"language":"zh-CN"}}'
)
PING = (
    '{"version":"2","type":"ping","seq":2,"serverseq":1,"position":"PT0.1S","id":"5a0f",'
    '"parameters":{"rtt":"PT0.045S"}}'
)
CLOSE = (
    '{"version":"2","type":"close","seq":3,"serverseq":2,"position":"PT0.1S","id":"5a0f",'
    '"parameters":{"reason":"end"}}'
)


def reply(ev: object) -> dict:  # type: ignore[type-arg]
    assert isinstance(ev, Reply) and ev.text is not None
    return json.loads(ev.text)  # type: ignore[no-any-return]


def test_documented_example_exchange() -> None:
    dec = AudioHookDecoder()
    started, opened = dec.receive_text(OPEN)
    assert isinstance(started, CallStarted) and started.codec == "PCMU"
    meta = started.metadata
    assert (meta.external_id, meta.caller, meta.callee) == (
        "090eaa2f",
        "+8613800138000",
        "+864008001234",
    )
    assert meta.channel_of == {Party.CUSTOMER: 0, Party.AGENT: 1}  # external, internal
    assert meta.extra["organizationId"] == "d7934" and meta.extra["language"] == "zh-CN"
    assert reply(opened) == {
        "version": "2",
        "type": "opened",
        "seq": 1,
        "clientseq": 1,
        "id": "5a0f",
        "parameters": {
            "startPaused": False,
            "media": [
                {
                    "type": "audio",
                    "format": "PCMU",
                    "channels": ["external", "internal"],
                    "rate": 8000,
                }
            ],
        },
    }
    # 100 ms of 2-channel PCMU: byte 0 customer, byte 1 agent, ...
    codes = np.tile(np.array([0x10, 0xE0], np.uint8), 800)
    (audio,) = dec.receive_bytes(codes.tobytes())
    assert isinstance(audio, FramesReceived)
    assert audio.pcm == ulaw_decode(codes).astype("<i2").tobytes()
    (pong,) = dec.receive_text(PING)
    assert reply(pong) | {"parameters": {}} == {
        "version": "2",
        "type": "pong",
        "seq": 2,
        "clientseq": 2,
        "id": "5a0f",
        "parameters": {},
    }
    stop, closed = dec.receive_text(CLOSE)
    assert stop == Stopped("normal") and reply(closed)["type"] == "closed"
    assert reply(closed)["clientseq"] == 3 and reply(closed)["seq"] == 3
    assert dec.receive_bytes(b"\x00" * 160) == []  # no audio after close


def test_offer_choice_prefers_two_channel_pcmu() -> None:
    l16 = {"type": "audio", "format": "L16", "channels": ["external", "internal"], "rate": 8000}
    mono = {"type": "audio", "format": "PCMU", "channels": ["internal"], "rate": 8000}
    wide = {"type": "audio", "format": "PCMU", "channels": ["external", "internal"], "rate": 16000}
    assert choose_offer([mono, l16, wide]) == l16
    assert choose_offer([mono, wide]) == mono
    assert choose_offer([wide, {"format": "opus"}, 3]) is None


def test_reversed_channel_order_and_l16() -> None:
    msg = json.loads(OPEN)
    msg["parameters"]["media"] = [
        {"type": "audio", "format": "L16", "channels": ["internal", "external"], "rate": 8000}
    ]
    dec = AudioHookDecoder()
    started, _ = dec.receive_text(json.dumps(msg))
    assert isinstance(started, CallStarted)
    assert started.metadata.channel_of == {Party.AGENT: 0, Party.CUSTOMER: 1}
    pcm = np.arange(-300, 300, dtype="<i2").tobytes()
    got = b"".join(
        ev.pcm
        for part in (pcm[:3], pcm[3:])
        for ev in dec.receive_bytes(part)
        if isinstance(ev, FramesReceived)
    )
    assert got == pcm  # torn frames carried, L16 little-endian kept


def test_pause_resume_fills_the_discarded_audio() -> None:
    enc = AudioHookEncoder(session_id="s1")
    dec = AudioHookDecoder()
    dec.receive_text(enc.open(conversation_id="c1", ani="1", dnis="2"))
    dec.receive_bytes(enc.audio(b"\x01\x00\x02\x00" * 800))  # 100 ms
    assert dec.receive_text(enc.paused()) == [Paused("audiohook")]
    fill, resumed = dec.receive_text(enc.resumed(1.5))
    assert isinstance(fill, FramesReceived) and fill.filled
    assert fill.silence == 12000 and fill.pcm == b""  # 1.5 s of silence, as a count
    assert resumed == Resumed(12000)
    assert dec.frames == 800 + 12000


def test_position_ahead_of_the_audio_means_lost_frames() -> None:
    enc = AudioHookEncoder(session_id="s1")
    dec = AudioHookDecoder()
    dec.receive_text(enc.open(conversation_id="c1", ani="1", dnis="2"))
    enc.audio(b"\x00" * 4 * 8000)  # one second the server never gets
    fill, pong = dec.receive_text(enc.ping())
    assert isinstance(fill, FramesReceived) and fill.filled and fill.silence == 8000
    assert isinstance(pong, Reply)


@pytest.mark.parametrize(
    ("messages", "code", "words"),
    [
        ([PING], 1008, "out of order"),
        ([PING.replace('"seq":2', '"seq":1')], 1008, "before open"),
        ([OPEN, OPEN.replace('"seq":1', '"seq":2')], 1008, "open sent twice"),
        ([OPEN.replace('"PCMU"', '"opus"')], 1003, "no supported AudioHook media"),
        ([OPEN, PING.replace("PT0.1S", "soon")], 1007, "ISO-8601"),
    ],
)
def test_violations_get_a_clear_code(messages: list[str], code: int, words: str) -> None:
    dec = AudioHookDecoder()
    with pytest.raises(ProtocolError) as err:
        for m in messages:
            dec.receive_text(m)
    assert err.value.close_code == code and words in err.value.reason


def test_audio_before_open_is_refused() -> None:
    with pytest.raises(ProtocolError) as err:
        AudioHookDecoder().receive_bytes(b"\xff" * 160)
    assert err.value.close_code == 1008


def test_update_and_error_are_traced() -> None:
    dec = AudioHookDecoder()
    dec.receive_text(OPEN)
    upd = '{"version":"2","type":"update","seq":2,"id":"5a0f","parameters":{"language":"en-US"}}'
    event, updated = dec.receive_text(upd)
    assert event == AppEvent("update", {"language": "en-US"}) and reply(updated)["type"] == (
        "updated"
    )


kinds = st.sampled_from(
    ["open", "ping", "paused", "resumed", "discarded", "update", "close", "error", "dtmf", "weird"]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=60),
            st.binary(max_size=400),
            st.builds(
                lambda k, seq, params, pos: json.dumps(
                    {
                        "version": "2",
                        "type": k,
                        "seq": seq,
                        "id": "x",
                        "parameters": params,
                        "position": pos,
                    }
                ),
                kinds,
                st.integers(0, 4),
                json_values,
                st.sampled_from(["PT1S", "PT0.5S", 7, "P"]),
            ),
            st.just(OPEN),
        ),
        max_size=8,
    )
)
def test_random_input_parses_or_raises_protocol_error(messages: list[str | bytes]) -> None:
    dec = AudioHookDecoder()
    for ev in feed_random(dec, messages):
        if isinstance(ev, FramesReceived):
            assert len(ev.pcm) % 2 == 0
        if isinstance(ev, Reply):
            assert json.loads(ev.text or "")["version"] == "2"


def test_encoder_audio_is_pcmu_of_the_stereo_pcm() -> None:
    pcm = np.array([1000, -1000] * 400, dtype="<i2")
    assert AudioHookEncoder(session_id="s").audio(pcm.tobytes()) == ulaw_encode(pcm).tobytes()
