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
    + bytes.fromhex("10 0140") + AUDIO
    + bytes.fromhex("03 0001") + b"5"
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
        Stopped("normal", "AudioSocket hangup")]
    dec = AudioSocketDecoder()
    dec.receive_bytes(AudioSocketEncoder.uuid(leg))
    assert dec.receive_bytes(AudioSocketEncoder.message(0xFF, b"\x04")) == [
        Stopped("switch_error", "AudioSocket memory_error")]


def test_higher_rate_kinds_follow_the_configured_rates() -> None:
    leg = uuid.uuid4()
    dec = AudioSocketDecoder(sample_rate=16000)
    dec.receive_bytes(AudioSocketEncoder.uuid(leg))
    assert dec.receive_bytes(AudioSocketEncoder.audio(AUDIO, 0x12)) == [
        PartyAudio(Party.CUSTOMER, None, AUDIO)]
    with pytest.raises(ProtocolError) as err:  # 0x11 is 12 kHz in the current docs
        dec.receive_bytes(AudioSocketEncoder.audio(AUDIO, 0x11))
    assert err.value.close_code == 1003
    interim = AudioSocketDecoder(sample_rate=16000, kind_rates={0x10: 8000, 0x11: 16000})
    interim.receive_bytes(AudioSocketEncoder.uuid(leg))  # Asterisk PR #1492 numbering
    assert interim.receive_bytes(AudioSocketEncoder.audio(AUDIO, 0x11))[0] == PartyAudio(
        Party.CUSTOMER, None, AUDIO)


@pytest.mark.parametrize(
    ("data", "code", "words"),
    [
        (bytes.fromhex("10 0002 0000"), 1008, "before the UUID"),
        (bytes.fromhex("01 0002 abcd"), 1008, "16 bytes"),
        (AudioSocketEncoder.uuid(uuid.uuid4()) + bytes.fromhex("10 0003 000000"), 1007, "odd"),
        (AudioSocketEncoder.uuid(uuid.uuid4()) + bytes.fromhex("42 0000"), 1007, "kind 0x42"),
    ],
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
@given(st.lists(st.one_of(
    st.binary(max_size=64),
    st.builds(AudioSocketEncoder.message, st.sampled_from([0, 1, 3, 0x10, 0x12, 0xFF, 7]),
              st.binary(max_size=40)),
    st.just(AudioSocketEncoder.uuid(uuid.UUID(int=5))),
), max_size=10))
def test_random_bytes_parse_or_raise_protocol_error(chunks: list[bytes]) -> None:
    dec = AudioSocketDecoder()
    try:
        for chunk in chunks:
            for ev in dec.receive_bytes(chunk):
                if isinstance(ev, PartyAudio):
                    assert len(ev.pcm) % 2 == 0 and ev.pcm
    except ProtocolError as exc:
        assert exc.close_code in (1003, 1007, 1008)
