"""The wire format of remote ASR: one utterance per request, one result per reply (sans-I/O).

A message is a small binary envelope:

    b"CWA" | version (1 byte) | header length (4 bytes, big endian) | JSON header | payload

The request's payload is the utterance as raw PCM16 little-endian at 16 kHz (what the
segmenter cut; a float32 copy would double the bytes on the wire); the reply has none. The
JSON header carries the idempotency key (call id, party, utterance sequence: the utterance's
first sample in the party's media time, the same for a live job, its retry and its catch-up
job), the language options, and for a reply the status and the result.

Everything is checked on receive, before any work: the total size (`max_bytes`, the bus's
`max_message_bytes`), the header size, the version, the audio length against the sample count
and the 30 s Whisper window, and every header field's type. A bad message raises
`EnvelopeError`, which the worker answers with status "error" and the client treats as a
failed attempt; nothing a peer sends can make either side allocate more than `max_bytes`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from asr.types import SAMPLE_RATE, AsrRequest, AsrResult

MAGIC = b"CWA"
VERSION = 1
_PREFIX = struct.Struct(">3sBI")
MAX_HEADER_BYTES = 4096
#: Whisper's window: no utterance is longer (vad.max_utterance_s is at most 29 s).
MAX_SAMPLES = 30 * SAMPLE_RATE
_LANGUAGES = (None, "zh", "en")

#: (call id, party, utterance sequence): what makes applying a result idempotent.
UtteranceKey = tuple[str, str, int]
Status = Literal["ok", "busy", "error"]


class EnvelopeError(ValueError):
    """A message that is not a well-formed remote-ASR envelope of a known version."""


@dataclass(frozen=True, slots=True)
class Reply:
    key: UtteranceKey
    status: Status
    result: AsrResult | None = None
    error: str | None = None


def _pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(head) > MAX_HEADER_BYTES:
        raise EnvelopeError(f"header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    return _PREFIX.pack(MAGIC, VERSION, len(head)) + head + payload


def _unpack(data: bytes, max_bytes: int) -> tuple[dict[str, Any], memoryview]:
    if len(data) > max_bytes:
        raise EnvelopeError(f"message of {len(data)} bytes exceeds the bound of {max_bytes}")
    if len(data) < _PREFIX.size:
        raise EnvelopeError("message too short for an envelope")
    magic, version, head_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise EnvelopeError("not a callwatch ASR envelope")
    if version != VERSION:
        raise EnvelopeError(f"envelope version {version} is not supported (this side: {VERSION})")
    if head_len > MAX_HEADER_BYTES or _PREFIX.size + head_len > len(data):
        raise EnvelopeError(f"bad header length {head_len}")
    raw = memoryview(data)[_PREFIX.size : _PREFIX.size + head_len]
    try:
        header = json.loads(bytes(raw))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EnvelopeError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise EnvelopeError("header is not a JSON object")
    return header, memoryview(data)[_PREFIX.size + head_len :]


def _key(header: dict[str, Any]) -> UtteranceKey:
    k = header.get("key")
    if (
        not isinstance(k, list)
        or len(k) != 3
        or not isinstance(k[0], str)
        or not isinstance(k[1], str)
        or not isinstance(k[2], int)
        or isinstance(k[2], bool)
        or len(k[0]) > 128
        or len(k[1]) > 32
    ):
        raise EnvelopeError("key must be [call id, party, sequence]")
    return k[0], k[1], k[2]


def _opt_str(header: dict[str, Any], name: str, allowed: tuple[str | None, ...]) -> str | None:
    value = header.get(name)
    if value not in allowed:
        raise EnvelopeError(f"{name} must be one of {allowed}")
    return value if isinstance(value, str) else None


# -- requests -------------------------------------------------------------------------------
def encode_request(key: UtteranceKey, request: AsrRequest) -> bytes:
    """One utterance (float32 in [-1, 1], as the ASR seam takes it) as PCM16 on the wire."""
    pcm = np.clip(np.rint(request.audio * 32768.0), -32768, 32767).astype("<i2")
    if len(pcm) > MAX_SAMPLES:
        raise EnvelopeError(f"utterance of {len(pcm)} samples exceeds {MAX_SAMPLES}")
    header = {
        "key": list(key),
        "samples": len(pcm),
        "language": request.language,
        "locked_language": request.locked_language,
    }
    return _pack(header, pcm.tobytes())


def decode_request(data: bytes, max_bytes: int) -> tuple[UtteranceKey, AsrRequest]:
    header, payload = _unpack(data, max_bytes)
    key = _key(header)
    samples = header.get("samples")
    if not isinstance(samples, int) or isinstance(samples, bool) or not 0 <= samples <= MAX_SAMPLES:
        raise EnvelopeError(f"samples must be an integer in 0..{MAX_SAMPLES}")
    if len(payload) != 2 * samples:
        raise EnvelopeError(f"payload of {len(payload)} bytes does not hold {samples} samples")
    audio = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
    return key, AsrRequest(
        audio=audio,
        language=_opt_str(header, "language", _LANGUAGES),
        locked_language=_opt_str(header, "locked_language", _LANGUAGES),
        tag=key,
    )


# -- replies --------------------------------------------------------------------------------
def encode_reply(
    key: UtteranceKey, status: Status, result: AsrResult | None = None, error: str | None = None
) -> bytes:
    header: dict[str, Any] = {"key": list(key), "status": status}
    if result is not None:
        header["result"] = {
            "text": result.text,
            "language": result.language,
            "confidence": result.confidence,
            "audio_s": result.audio_s,
            "compute_s": result.compute_s,
            "language_p": result.language_p,
            "fallback": result.fallback,
        }
    if error is not None:
        header["error"] = error[:500]
    return _pack(header)


def _float(fields: dict[str, Any], name: str, *, optional: bool = False) -> float | None:
    value = fields.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise EnvelopeError(f"result.{name} must be a number")
    return float(value)


def decode_reply(data: bytes, max_bytes: int) -> Reply:
    header, payload = _unpack(data, max_bytes)
    if len(payload):
        raise EnvelopeError("a reply carries no payload")
    key = _key(header)
    status = header.get("status")
    if status not in ("ok", "busy", "error"):
        raise EnvelopeError("status must be ok, busy or error")
    error = header.get("error")
    if error is not None and not isinstance(error, str):
        raise EnvelopeError("error must be a string")
    if status != "ok":
        return Reply(key, status, None, error)
    fields = header.get("result")
    if not isinstance(fields, dict):
        raise EnvelopeError("an ok reply carries a result")
    text, language = fields.get("text"), fields.get("language")
    fallback = fields.get("fallback")
    if not isinstance(text, str) or not isinstance(language, str) or len(language) > 16:
        raise EnvelopeError("result.text and result.language must be strings")
    if fallback is not None and not isinstance(fallback, str):
        raise EnvelopeError("result.fallback must be a string")
    result = AsrResult(
        text=text,
        language=language,
        confidence=_float(fields, "confidence") or 0.0,
        audio_s=_float(fields, "audio_s") or 0.0,
        compute_s=_float(fields, "compute_s") or 0.0,
        tag=key,
        language_p=_float(fields, "language_p", optional=True),
        fallback=fallback,
    )
    return Reply(key, "ok", result, None)
