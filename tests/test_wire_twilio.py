"""Twilio Media Streams codec: the documented example session (PROTOCOLS.md §4.5) and its
quirks (string counters, per-track chunks aligned by timestamp, dtmf on bidirectional streams
only), the simulator's encoder round trip, and fuzzed input."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_quality.g711 import ulaw_decode, ulaw_encode
from monitor.core.events import Party
from monitor.errors import ProtocolError
from monitor.wire.events import AppEvent, CallStarted, Dtmf, PartyAudio, Stopped
from monitor.wire.twilio import TwilioDecoder, TwilioEncoder
from tests.wire_support import feed_random, json_values

# The documented example session, verbatim apart from the elided ids and payloads.
PAYLOAD_IN = base64.b64encode(bytes([0x7E]) * 160).decode()
PAYLOAD_OUT = base64.b64encode(bytes([0xFF]) * 160).decode()
EXAMPLE = [
    '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    '{"event":"start","sequenceNumber":"1","streamSid":"MZ11","start":{"streamSid":"MZ11",'
    '"accountSid":"AC22","callSid":"CA33","tracks":["inbound","outbound"],'
    '"customParameters":{"agentId":"1024"},"mediaFormat":{"encoding":"audio/x-mulaw",'
    '"sampleRate":8000,"channels":1}}}',
    '{"event":"media","sequenceNumber":"2","streamSid":"MZ11","media":{"track":"inbound",'
    f'"chunk":"1","timestamp":"5","payload":"{PAYLOAD_IN}"}}}}',
    '{"event":"media","sequenceNumber":"3","streamSid":"MZ11","media":{"track":"outbound",'
    f'"chunk":"1","timestamp":"5","payload":"{PAYLOAD_OUT}"}}}}',
    '{"event":"stop","sequenceNumber":"9001","streamSid":"MZ11","stop":{"accountSid":"AC22",'
    '"callSid":"CA33"}}',
]


def test_documented_example_session() -> None:
    dec = TwilioDecoder()
    events = [ev for msg in EXAMPLE for ev in dec.receive_text(msg)]
    connected, started, inbound, outbound, stop = events
    assert connected == AppEvent("switch_connected", {"protocol": "Call", "version": "1.0.0"})
    assert isinstance(started, CallStarted) and started.codec == "PCMU"
    meta = started.metadata
    assert (meta.external_id, meta.agent_id, meta.sample_rate, meta.channels) == (
        "CA33",
        "1024",
        8000,
        2,
    )
    assert meta.channel_of == {Party.CUSTOMER: 0, Party.AGENT: 1}  # inbound = customer
    assert meta.extra["streamSid"] == "MZ11" and meta.extra["accountSid"] == "AC22"
    assert isinstance(inbound, PartyAudio) and isinstance(outbound, PartyAudio)
    assert (inbound.party, inbound.position, inbound.seq) == (Party.CUSTOMER, 40, 1)  # 5 ms
    assert outbound.party is Party.AGENT
    expected = ulaw_decode(np.full(160, 0x7E, np.uint8)).astype("<i2").tobytes()
    assert inbound.pcm == expected
    assert stop == Stopped("normal", "Twilio stop")
    assert dec.sequence_gaps == 9001 - 3 - 1  # numbered messages never seen


def test_single_track_stream_is_one_party() -> None:
    dec = TwilioDecoder()
    start = json.loads(EXAMPLE[1])
    start["start"]["tracks"] = ["outbound"]
    (ev,) = dec.receive_text(json.dumps(start))
    assert isinstance(ev, CallStarted)
    assert ev.metadata.channels == 1 and ev.metadata.channel_of == {Party.AGENT: 0}
    with pytest.raises(ProtocolError, match="not a started track"):
        dec.receive_text(EXAMPLE[2])  # inbound media on an outbound-only stream


def test_dtmf_and_mark_go_to_the_trace() -> None:
    enc = TwilioEncoder(stream_sid="MZ1", call_sid="CA1")
    dec = TwilioDecoder()
    dec.receive_text(enc.start(["inbound", "outbound"], {}))
    assert dec.receive_text(enc.dtmf("7")) == [Dtmf("7", Party.CUSTOMER)]
    assert dec.receive_text(enc.mark("greeting-done")) == [
        AppEvent("mark", {"name": "greeting-done"})
    ]


@pytest.mark.parametrize(
    ("message", "code", "words"),
    [
        (EXAMPLE[2], 1008, "before start"),
        (
            '{"event":"start","start":{"mediaFormat":{"encoding":"audio/x-l16",'
            '"sampleRate":16000}}}',
            1003,
            "unsupported Twilio media",
        ),
        ('{"event":"start","sequenceNumber":"x1"}', 1007, "decimal counter"),
        ("[]", 1007, "JSON object"),
    ],
)
def test_violations_get_a_clear_code(message: str, code: int, words: str) -> None:
    with pytest.raises(ProtocolError) as err:
        TwilioDecoder().receive_text(message)
    assert err.value.close_code == code and words in err.value.reason


def test_encoder_round_trip_is_g711_exact() -> None:
    rng = np.random.default_rng(3)
    pcm = rng.integers(-20000, 20000, 160).astype("<i2")
    enc = TwilioEncoder(stream_sid="MZ1", call_sid="CA1")
    dec = TwilioDecoder()
    dec.receive_text(enc.start(["inbound", "outbound"], {"queue": "cards"}))
    (audio,) = dec.receive_text(enc.media("outbound", 40, pcm.tobytes()))
    assert isinstance(audio, PartyAudio) and audio.position == 320 and audio.seq == 1
    assert audio.pcm == ulaw_decode(ulaw_encode(pcm)).astype("<i2").tobytes()


def test_binary_frames_are_refused() -> None:
    with pytest.raises(ProtocolError) as err:
        TwilioDecoder().receive_bytes(b"\x00" * 10)
    assert err.value.close_code == 1003


events = st.sampled_from(["connected", "start", "media", "dtmf", "mark", "stop", "other"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(max_size=80),
            st.binary(max_size=40),
            st.builds(
                lambda e, body: json.dumps({"event": e, "sequenceNumber": "1", e: body}),
                events,
                json_values,
            ),
            st.sampled_from(EXAMPLE),
        ),
        max_size=8,
    )
)
def test_random_input_parses_or_raises_protocol_error(messages: list[str | bytes]) -> None:
    dec = TwilioDecoder()
    for ev in feed_random(dec, messages):
        if isinstance(ev, PartyAudio):
            assert len(ev.pcm) % 2 == 0 and ev.party in dec.parties
