"""The audio-fork codec: metadata first, torn frames carried, any frame size, fuzzed input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.events import Party
from monitor.errors import ProtocolError
from monitor.wire.audiofork import AudioForkDecoder, AudioForkEncoder
from monitor.wire.events import AppEvent, CallStarted, Dtmf, FramesReceived, Paused, Resumed
from tests.wire_support import feed_random, json_values

META = {
    "callid": "7f3c@10.1.2.3",
    "from": "13800138000",
    "to": "95588",
    "agent": "1024",
    "queue": "cards",
    "sampleRate": 8000,
    "mixType": "stereo",
}


def test_metadata_then_audio_then_text_then_flush() -> None:
    dec = AudioForkDecoder()
    (ev,) = dec.receive_text(AudioForkEncoder.metadata(META))
    assert isinstance(ev, CallStarted)
    m = ev.metadata
    assert (m.external_id, m.agent_id, m.queue, m.caller, m.callee) == (
        "7f3c@10.1.2.3",
        "1024",
        "cards",
        "13800138000",
        "95588",
    )
    assert m.sample_rate == 8000 and m.channels == 2
    assert m.channel_of == {Party.CUSTOMER: 0, Party.AGENT: 1}
    (audio,) = dec.receive_bytes(b"\x01\x00\x02\x00" * 160)
    assert isinstance(audio, FramesReceived) and len(audio.pcm) == 640
    assert dec.receive_text('{"event":"dtmf","digit":"1"}') == [Dtmf("1")]
    assert dec.receive_text('{"agent":"1024"}') == [
        AppEvent("app_message", {"payload": {"agent": "1024"}})
    ]
    assert dec.receive_bytes(b"") == [AppEvent("graceful_shutdown")]


def test_jambonz_dtmf_and_pause_markers() -> None:
    dec = AudioForkDecoder()
    dec.receive_text('{"sampleRate":8000,"mixType":"stereo","callSid":"b7d0"}')
    # jambonz passDtmf: duration in 8 kHz RTP timestamp units (1600 = 200 ms)
    assert dec.receive_text('{"event":"dtmf","dtmf":"5","duration":"1600"}') == [
        Dtmf("5", None, 200)
    ]
    assert dec.receive_text('{"event":"paused"}') == [Paused("app_marker")]
    assert dec.receive_text('{"event":"resume"}') == [Resumed()]  # while paused: a resume
    assert dec.receive_text('{"event":"resume"}')[0] == AppEvent(  # else: a hold marker
        "app_message", {"payload": {"event": "resume"}}
    )


def test_torn_frames_are_carried_to_the_next_message() -> None:
    dec = AudioForkDecoder()
    dec.receive_text(json.dumps({"sampleRate": 16000, "channels": 2}))
    pcm = np.arange(-50, 50, dtype="<i2").tobytes()  # 50 stereo frames
    got = b""
    for size in (1, 2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        for ev in dec.receive_bytes(pcm[:size]):
            assert isinstance(ev, FramesReceived) and len(ev.pcm) % 4 == 0
            got += ev.pcm
        pcm = pcm[size:]
    for ev in dec.receive_bytes(pcm):
        got += ev.pcm  # type: ignore[union-attr]
    assert got == np.arange(-50, 50, dtype="<i2").tobytes()
    assert dec.pending_bytes == 0


def test_audio_before_metadata_is_a_policy_violation() -> None:
    with pytest.raises(ProtocolError) as err:
        AudioForkDecoder().receive_bytes(b"\x00" * 640)
    assert err.value.close_code == 1008 and "metadata" in err.value.reason


@pytest.mark.parametrize(
    ("meta", "code", "words"),
    [
        ("not json", 1007, "not JSON"),
        ("[1, 2]", 1007, "JSON object"),
        ('{"sampleRate": 44100}', 1003, "sample rate 44100"),
        ('{"sampleRate": "fast"}', 1007, "integer"),
        ('{"channels": 6}', 1003, "channel count 6"),
        ('{"mixType": "quad"}', 1003, "mixType"),
        ('{"customerChannel": 1, "agentChannel": 1}', 1007, "must be 0 and 1"),
        ('{"sampleRate": true}', 1007, "number"),
    ],
)
def test_bad_metadata_gets_a_clear_code_and_reason(meta: str, code: int, words: str) -> None:
    with pytest.raises(ProtocolError) as err:
        AudioForkDecoder().receive_text(meta)
    assert err.value.close_code == code
    assert words in err.value.reason


def test_metadata_aliases_and_defaults() -> None:
    dec = AudioForkDecoder(default_sample_rate=8000, default_channels=2)
    (ev,) = dec.receive_text('{"callSid":"CA1","sampleRate":"16k","customerChannel":1,"x":1}')
    assert isinstance(ev, CallStarted)
    m = ev.metadata
    assert m.external_id == "CA1" and m.sample_rate == 16000
    assert m.channel_of == {Party.CUSTOMER: 1, Party.AGENT: 0}
    assert m.extra == {"x": 1}
    (ev,) = AudioForkDecoder().receive_text('{"mixType":"mono"}')
    assert isinstance(ev, CallStarted)
    assert ev.metadata.channels == 1 and ev.metadata.channel_of == {Party.CUSTOMER: 0}


@settings(max_examples=300, deadline=None)
@given(
    first=st.one_of(st.text(max_size=300), st.binary(max_size=300)),
    rest=st.lists(st.one_of(st.text(max_size=50), st.binary(max_size=700)), max_size=8),
)
def test_random_input_parses_or_raises_protocol_error(first: str | bytes, rest: list) -> None:
    dec = AudioForkDecoder()
    for message in [first, *rest]:
        try:
            events = (
                dec.receive_text(message)
                if isinstance(message, str)
                else dec.receive_bytes(message)
            )
        except ProtocolError as exc:
            assert 1000 <= exc.close_code < 4000 and len(exc.reason.encode()) <= 123
            return
        for ev in events:
            assert isinstance(ev, CallStarted | FramesReceived | AppEvent | Dtmf | Paused | Resumed)
            if isinstance(ev, FramesReceived):
                assert len(ev.pcm) % (2 * dec_channels(dec)) == 0


def dec_channels(dec: AudioForkDecoder) -> int:
    return dec._frame_bytes // 2  # noqa: SLF001 - the invariant under test is internal


@given(
    st.dictionaries(
        st.text(max_size=10),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False),
            st.text(max_size=20),
            st.lists(st.integers(), max_size=3),
        ),
        max_size=8,
    )
)
def test_random_json_objects_parse_or_raise_protocol_error(doc: dict) -> None:
    try:
        AudioForkDecoder().receive_text(json.dumps(doc))
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["event", "type", "digit", "dtmf", "duration", "payload", "x"]),
            json_values,
            max_size=4,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_mid_stream_json_of_any_shape_is_an_event(docs: list[dict]) -> None:
    """Issue 17 item 15: `{"event": {...}}` or a list once raised TypeError (close 1011). Any
    JSON object after the metadata is a typed event, and an app message's payload never carries
    a non-string event name for the gateway to match on."""
    dec = AudioForkDecoder()
    dec.receive_text('{"sampleRate":8000,"mixType":"stereo"}')
    for ev in feed_random(dec, [json.dumps(d) for d in docs]):
        assert isinstance(ev, AppEvent | Dtmf | Paused | Resumed)
        payload = ev.data.get("payload") if isinstance(ev, AppEvent) else None
        if isinstance(payload, dict):
            assert all(isinstance(payload.get(k), str | None) for k in ("event", "type"))


def test_event_that_is_an_object_is_kept_as_text() -> None:
    dec = AudioForkDecoder()
    dec.receive_text('{"sampleRate":8000}')
    (ev,) = dec.receive_text('{"event": {"a": 1}}')
    assert ev == AppEvent("app_message", {"payload": '{"event": {"a": 1}}'})
    (ev,) = dec.receive_text('{"type": ["hold"]}')
    assert isinstance(ev, AppEvent) and ev.data["payload"] == '{"type": ["hold"]}'
