"""Shared wire helpers: typed access to the JSON a switch sends (every wrong type or missing
field is a `ProtocolError`, close 1007, naming the field - never a `KeyError`/`TypeError` in the
gateway) and the G.711/L16 payload codecs (decoded once, to little-endian L16)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, TypeVar

import numpy as np

from audio_quality.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from monitor.errors import ProtocolError

T = TypeVar("T")
_ISO_SECONDS = re.compile(r"^PT(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?$")


def bad(reason: str) -> ProtocolError:
    return ProtocolError(ProtocolError.INVALID_PAYLOAD, reason)


def load_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise bad(f"{what} message is not JSON") from None
    if not isinstance(value, dict):
        raise bad(f"{what} message must be a JSON object")
    return value


def get(obj: dict[str, Any], key: str, kind: type[T], where: str) -> T:
    value = obj.get(key)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise bad(f"{where}.{key} must be {kind.__name__}, got {type(value).__name__}")
    return value


def opt(obj: dict[str, Any], key: str, kind: type[T], where: str, default: T) -> T:
    if obj.get(key) is None:
        return default
    return get(obj, key, kind, where)


def int_text(obj: dict[str, Any], key: str, where: str) -> int:
    """Twilio sends counters as strings ("1"), some clones as numbers: accept both."""
    value = obj.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 16:
        return int(value)
    raise bad(f"{where}.{key} must be a decimal counter, got {str(value)[:20]!r}")


def b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"{where} is not valid base64") from None


def iso_seconds(text: Any, where: str) -> float:
    """ISO-8601 duration as AudioHook writes it ("PT12.34S") in seconds."""
    m = _ISO_SECONDS.match(text) if isinstance(text, str) else None
    if m is None or len(text) > 40 or not any(m.groups()):
        raise bad(f"{where} must be an ISO-8601 duration like PT1.5S, got {str(text)[:20]!r}")
    h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mi * 60 + s


#: Bytes per sample on the wire for each payload codec.
CODEC_WIDTH = {"PCMU": 1, "PCMA": 1, "L16": 2}


def decode_payload(codec: str, data: bytes) -> bytes:
    """Wire payload -> little-endian L16 (the sample layout, interleaved or not, is kept)."""
    if codec == "L16":
        return data
    codes = np.frombuffer(data, dtype=np.uint8)
    pcm = ulaw_decode(codes) if codec == "PCMU" else alaw_decode(codes)
    return pcm.astype("<i2").tobytes()


def encode_payload(codec: str, pcm: bytes) -> bytes:
    """Little-endian L16 -> wire payload (for the simulator)."""
    if codec == "L16":
        return pcm
    x = np.frombuffer(pcm, dtype="<i2").astype(np.int16)
    return (ulaw_encode(x) if codec == "PCMU" else alaw_encode(x)).tobytes()
