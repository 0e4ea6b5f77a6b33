"""Asterisk AudioSocket codec: the documented byte stream (PROTOCOLS.md §6) split at every
byte, each kind, leg pairing, the simulator's encoder, and fuzzed bytes."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.core.events import Party
from monitor.errors import ProtocolError
from monitor.wire.audiosocket import (
    AudioSocketDecoder,
    AudioSocketEncoder,
    LegIdentified,
    leg_of,
)
from monitor.wire.events import Dtmf, PartyAudio, Stopped

AUDIO = bytes(range(256)) + bytes(range(64))  # 320 bytes = 20 ms of slin 8 kHz
EXAMPLE = (
    bytes.fromhex("01 0010 40325ec25efd4bd3805f53576e581d13")
    + bytes.fromhex("10 0140")
    + AUDIO
    + bytes.fromhex("03 0001")
    + b"5"
    + bytes.fromhex("ff 0001 01")
)


def test_documented_stream_split_anywhere() -> None:
    for cut in range(len(EXAMPLE) + 1):
        dec = AudioSocketDecoder()
        events = dec.receive_bytes(EXAMPLE[:cut]) + dec.receive_bytes(EXAMPLE[cut:])
        assert events == [
            LegIdentified(uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")),
            PartyAudio(Party.CUSTOMER, None, AUDIO),
            Dtmf("5", Party.CUSTOMER),
            Stopped("normal", "calling party hung up"),
        ], cut
        assert dec.ended


def test_end_signals_and_errors() -> None:
    leg = uuid.uuid4()
    dec = AudioSocketDecoder()
    dec.receive_bytes(AudioSocketEncoder.uuid(leg))
    assert dec.receive_bytes(AudioSocketEncoder.terminate()) == [
        Stopped("normal", "AudioSocket hangup")
    ]
    dec = AudioSocketDecoder()
    dec.receive_bytes(AudioSocketEncoder.uuid(leg))
    assert dec.receive_bytes(AudioSocketEncoder.message(0xFF, b"\x04")) == [
        Stopped("switch_error", "AudioSocket memory_error")
    ]


def test_higher_rate_kinds_are_resampled_to_the_call_rate() -> None:
    import numpy as np

    leg = uuid.uuid4()
    dec = AudioSocketDecoder(sample_rate=16000)
    dec.receive_bytes(AudioSocketEncoder.uuid(leg))
    assert dec.receive_bytes(AudioSocketEncoder.audio(AUDIO, 0x12)) == [  # 16 kHz: as is
        PartyAudio(Party.CUSTOMER, None, AUDIO)
    ]
    # One second of a 440 Hz tone at 48 kHz (kind 0x16) in 20 ms messages -> 16 kHz.
    t = np.arange(48000) / 48000
    tone = (np.sin(2 * np.pi * 440 * t) * 12000).astype("<i2")
    out = b""
    for i in range(0, tone.size, 960):
        for ev in dec.receive_bytes(AudioSocketEncoder.audio(tone[i : i + 960].tobytes(), 0x16)):
            assert isinstance(ev, PartyAudio)
            out += ev.pcm
    *tail, stop = dec.receive_bytes(AudioSocketEncoder.hangup())
    out += b"".join(ev.pcm for ev in tail if isinstance(ev, PartyAudio))
    assert stop == Stopped("normal", "calling party hung up")
    got = np.frombuffer(out, "<i2").astype(float)
    assert got.size == 16000
    ref = np.sin(2 * np.pi * 440 * np.arange(16000) / 16000) * 12000
    assert np.sqrt(np.mean((got[200:-200] - ref[200:-200]) ** 2)) < 200  # ~35 dB SNR at least
    interim = AudioSocketDecoder(sample_rate=16000, kind_rates={0x10: 8000, 0x11: 16000})
    interim.receive_bytes(AudioSocketEncoder.uuid(leg))  # Asterisk PR #1492 numbering
    assert interim.receive_bytes(AudioSocketEncoder.audio(AUDIO, 0x11))[0] == PartyAudio(
        Party.CUSTOMER, None, AUDIO
    )


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (bytes.fromhex("10 0002 0000"), 1008, "before the UUID"),
        (bytes.fromhex("01 0002 abcd"), 1008, "16 bytes"),
        (AudioSocketEncoder.uuid(uuid.uuid4()) + bytes.fromhex("10 0003 000000"), 1007, "odd"),
        (AudioSocketEncoder.uuid(uuid.uuid4()) + bytes.fromhex("42 0000"), 1007, "kind 0x42"),
    ],
    # Named by what they break, not by their bytes: a random UUID in a test id differs between
    # pytest-xdist's workers, which then refuse to run the suite.
    ids=["audio before the UUID", "UUID of 2 bytes", "odd audio length", "unknown kind"],
)
def test_violations(data: bytes, code: int, words: str) -> None:
    with pytest.raises(ProtocolError) as err:
        AudioSocketDecoder().receive_bytes(data)
    assert err.value.close_code == code and words in err.value.reason


def test_leg_pairing_by_last_digit_parity_or_settings() -> None:
    customer = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d10")
    agent = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d11")
    assert leg_of(customer) == (str(customer), Party.CUSTOMER)
    assert leg_of(agent) == (str(customer), Party.AGENT)
    assert leg_of(uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d1f"))[1] is Party.AGENT
    mapped = {str(customer): "call-7:agent"}
    assert leg_of(customer, mapped) == ("call-7", Party.AGENT)
    with pytest.raises(ValueError, match="customer or agent"):
        leg_of(customer, {str(customer): "call-7:boss"})


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(max_size=64),
            st.builds(
                AudioSocketEncoder.message,
                st.sampled_from([0, 1, 3, 0x10, 0x12, 0xFF, 7]),
                st.binary(max_size=40),
            ),
            st.just(AudioSocketEncoder.uuid(uuid.UUID(int=5))),
        ),
        max_size=10,
    )
)
def test_random_bytes_parse_or_raise_protocol_error(chunks: list[bytes]) -> None:
    dec = AudioSocketDecoder()
    try:
        for chunk in chunks:
            for ev in dec.receive_bytes(chunk):
                if isinstance(ev, PartyAudio):
                    assert len(ev.pcm) % 2 == 0 and ev.pcm
    except ProtocolError as exc:
        assert exc.close_code in (1003, 1007, 1008)
