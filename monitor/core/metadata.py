"""Call metadata: parse what a switch sends in its first frame into one typed record.

Switches name the same facts differently (drachtio `callid`, jambonz `callSid` + `mixType`,
custom dialplan JSON), so each field accepts the documented aliases. Anything we do not map is
kept in `extra` for the call record. Unsupported audio layouts raise `ProtocolError` with the
close code the gateway sends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from monitor.core.events import Party
from monitor.errors import ProtocolError

SUPPORTED_RATES = (8000, 16000)
MAX_METADATA_BYTES = 8192  # mod_audio_fork's MAX_METADATA_LEN

_ALIASES: dict[str, tuple[str, ...]] = {
    # jambonz sends its own id as `call_sid` / `callSid` beside the SIP Call-ID (`call_id` /
    # `callId`): the sid names the call, so it comes first; the Call-ID stays in `extra`.
    "external_id": ("callSid", "call_sid", "CallSid", "callid", "callId", "call_id", "uuid"),
    "agent_id": ("agent", "agentId", "agent_id"),
    "queue": ("queue", "queueName", "queue_name"),
    "caller": ("from", "caller", "ani", "callerNumber"),
    "callee": ("to", "callee", "dnis", "calledNumber"),
    "sample_rate": ("sampleRate", "sample_rate", "rate"),
    "channels": ("channels", "channelCount"),
    "customer_channel": ("customerChannel", "customer_channel"),
    "agent_channel": ("agentChannel", "agent_channel"),
}
_MIX_CHANNELS = {"mono": 1, "mixed": 1, "stereo": 2}


@dataclass(frozen=True, slots=True)
class CallMetadata:
    external_id: str | None
    sample_rate: int
    channels: int
    channel_of: dict[Party, int]  # which interleaved channel carries each party
    agent_id: str | None = None
    queue: str | None = None
    caller: str | None = None
    callee: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def frame_bytes(self) -> int:
        """Bytes of one interleaved L16 frame (one sample of every channel)."""
        return 2 * self.channels


def _pick(raw: Mapping[str, Any], name: str) -> Any:
    for alias in _ALIASES[name]:
        if alias in raw and raw[alias] not in (None, ""):
            return raw[alias]
    return None


def _alias(raw: Mapping[str, Any], name: str) -> str | None:
    """The key `_pick` read `name` from, if any."""
    return next((a for a in _ALIASES[name] if a in raw and raw[a] not in (None, "")), None)


def _as_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise ProtocolError(ProtocolError.INVALID_PAYLOAD, f"metadata {name} must be a number")
    if isinstance(value, str):
        text = value.strip().lower()
        value = text[:-1] + "000" if text.endswith("k") else text
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ProtocolError(
            ProtocolError.INVALID_PAYLOAD, f"metadata {name} must be an integer, got {value!r}"
        ) from None


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)[:256]


def format_declared(text: str) -> bool:
    """Whether metadata that `parse_metadata` accepted names both the rate and the channel
    count itself (else one of them came from the path or the gateway's defaults: a guess)."""
    raw = json.loads(text)
    return _pick(raw, "sample_rate") is not None and (
        _pick(raw, "channels") is not None or raw.get("mixType") is not None
    )


def parse_metadata(
    text: str, *, default_sample_rate: int = 8000, default_channels: int = 2
) -> CallMetadata:
    """Parse the first TEXT frame. Raises `ProtocolError` (1007 for malformed JSON or types,
    1003 for an audio layout we cannot take)."""
    if len(text.encode()) > MAX_METADATA_BYTES:
        raise ProtocolError(
            ProtocolError.INVALID_PAYLOAD, f"metadata longer than {MAX_METADATA_BYTES} bytes"
        )
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProtocolError(
            ProtocolError.INVALID_PAYLOAD, f"metadata is not JSON ({exc.msg} at {exc.pos})"
        ) from None
    if not isinstance(raw, dict):
        raise ProtocolError(ProtocolError.INVALID_PAYLOAD, "metadata must be a JSON object")

    rate_raw = _pick(raw, "sample_rate")
    rate = default_sample_rate if rate_raw is None else _as_int(rate_raw, "sampleRate")
    if rate not in SUPPORTED_RATES:
        raise ProtocolError(
            ProtocolError.UNSUPPORTED_DATA,
            f"unsupported sample rate {rate}; send 8000 or 16000",
        )
    channels_raw = _pick(raw, "channels")
    mix = raw.get("mixType")
    if channels_raw is not None:
        channels = _as_int(channels_raw, "channels")
    elif mix is not None:
        if mix not in _MIX_CHANNELS:
            raise ProtocolError(
                ProtocolError.UNSUPPORTED_DATA, f"unsupported mixType {mix!r}; use stereo or mono"
            )
        channels = _MIX_CHANNELS[mix]
    else:
        channels = default_channels
    if channels not in (1, 2):
        raise ProtocolError(
            ProtocolError.UNSUPPORTED_DATA, f"unsupported channel count {channels}; send 1 or 2"
        )

    cust_raw, agent_raw = _pick(raw, "customer_channel"), _pick(raw, "agent_channel")
    customer = 0 if cust_raw is None else _as_int(cust_raw, "customerChannel")
    agent = (1 - customer) if agent_raw is None else _as_int(agent_raw, "agentChannel")
    if channels == 1:
        # A mono fork carries one leg only: the read leg (the caller) unless told otherwise.
        only = Party.AGENT if agent_raw is not None and cust_raw is None else Party.CUSTOMER
        channel_of = {only: 0}
    else:
        if {customer, agent} != {0, 1}:
            raise ProtocolError(
                ProtocolError.INVALID_PAYLOAD,
                f"customerChannel={customer} and agentChannel={agent} must be 0 and 1",
            )
        channel_of = {Party.CUSTOMER: customer, Party.AGENT: agent}

    # Keys read into a field leave `extra`; an unused alias (jambonz's SIP `call_id` beside
    # its `call_sid`) is kept.
    mapped = {_alias(raw, name) for name in _ALIASES} | {"mixType"}
    return CallMetadata(
        external_id=_as_text(_pick(raw, "external_id")),
        sample_rate=rate,
        channels=channels,
        channel_of=channel_of,
        agent_id=_as_text(_pick(raw, "agent_id")),
        queue=_as_text(_pick(raw, "queue")),
        caller=_as_text(_pick(raw, "caller")),
        callee=_as_text(_pick(raw, "callee")),
        extra={k: v for k, v in raw.items() if k not in mapped},
    )
