"""Shared wire helpers: G.711 μ-law/A-law and L16 payloads decode to the same L16 the codec
arithmetic gives, and AudioHook's ISO-8601 durations parse (or raise the protocol error)."""

from __future__ import annotations

import numpy as np
import pytest

from audio_quality.g711 import round_trip
from monitor.errors import ProtocolError
from monitor.wire import fields


@pytest.mark.parametrize("codec", ["PCMU", "PCMA", "L16"])
def test_payload_codecs_round_trip(codec: str) -> None:
    x = np.random.default_rng(1).integers(-32768, 32767, 4000).astype("<i2")
    wire = fields.encode_payload(codec, x.tobytes())
    assert len(wire) == x.size * fields.CODEC_WIDTH[codec]
    assert fields.decode_payload(codec, wire) == round_trip(x, codec).astype("<i2").tobytes()


@pytest.mark.parametrize(
    ("text", "seconds"), [("PT0S", 0.0), ("PT12.34S", 12.34), ("PT1M2.5S", 62.5), ("PT1H", 3600.0)]
)
def test_iso_durations(text: str, seconds: float) -> None:
    assert fields.iso_seconds(text, "x") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["12", "PT", "P1D", "PTxS", 5, None])
def test_bad_iso_durations_are_protocol_errors(text: object) -> None:
    with pytest.raises(ProtocolError) as err:
        fields.iso_seconds(text, "ping.position")
    assert err.value.close_code == 1007 and "ping.position" in err.value.reason
