"""Asterisk AudioSocket over raw TCP: the sans-I/O codec and leg pairing (PROTOCOLS.md §6).

Every message is `kind` (1 byte) + payload length (uint16 big-endian) + payload. Asterisk sends
`0x01` + the 16-byte call UUID first, then `0x10` audio (slin 8 kHz mono little-endian; the
higher-rate kinds `0x11`-`0x18` in recent releases), `0x03` DTMF (one ASCII digit), and ends
with `0x00`, `0xff` + error code (`0x01` = the calling party hung up) or by closing the socket.
A TCP stream may split or join messages anywhere: the decoder keeps a carry-over buffer.

One connection carries one mono leg, so a call's two parties come on two connections. Pairing
(`leg_of`): an explicit map from settings (`uuid -> "call-key:party"`) wins; otherwise the
convention documented in the README: both legs' UUIDs differ only in the last hex digit, and
that digit's parity says the party (even = customer, odd = agent).

Higher-rate kinds: the current Asterisk docs list 0x11 = 12 kHz, 0x12 = 16 kHz, ...; an interim
revision (PR #1492) used 0x11 for 16 kHz. `kind_rates` is a parameter so a deployment can
follow its Asterisk version. Audio at a rate other than the call's is resampled to it with a
streaming soxr resampler per rate (its delay is flushed when the leg ends), so a leg at 48 kHz
joins an 8 or 16 kHz call.
"""

from __future__ import annotations

import struct
import uuid as uuidlib
from dataclasses import dataclass

import numpy as np
import soxr

from monitor.core.events import Party
from monitor.errors import ProtocolError
from monitor.wire.events import CallEvent, Dtmf, PartyAudio, Stopped

PROTOCOL_NAME = "audiosocket"
KIND_HANGUP, KIND_UUID, KIND_DTMF, KIND_ERROR = 0x00, 0x01, 0x03, 0xFF
KIND_RATES = {
    0x10: 8000, 0x11: 12000, 0x12: 16000, 0x13: 24000, 0x14: 32000,
    0x15: 44100, 0x16: 48000, 0x17: 96000, 0x18: 192000,
}  # fmt: skip
ERROR_NAMES = {0x01: "hangup", 0x02: "frame_forwarding_error", 0x04: "memory_error"}
_HEADER = struct.Struct(">BH")


@dataclass(frozen=True, slots=True)
class LegIdentified:
    """The leg's UUID arrived (kind 0x01): the runtime pairs it with its call."""

    uuid: uuidlib.UUID


def leg_of(leg: uuidlib.UUID, legs: dict[str, str] | None = None) -> tuple[str, Party]:
    """(call key, party) for a leg UUID; see the module docstring for the convention."""
    text = str(leg)
    if legs and text in legs:
        key, _, party = legs[text].rpartition(":")
        try:
            return key or text, Party(party)
        except ValueError:
            raise ValueError(
                f"audiosocket leg map {text}: party must be customer or agent"
            ) from None
    last = int(text[-1], 16)
    return text[:-1] + format(last & ~1, "x"), Party.AGENT if last & 1 else Party.CUSTOMER


class AudioSocketDecoder:
    """Bytes from Asterisk -> events. Raises `ProtocolError` on violations."""

    def __init__(self, *, sample_rate: int = 8000, kind_rates: dict[int, int] | None = None):
        self.sample_rate = sample_rate
        self.kind_rates = kind_rates or KIND_RATES
        self.party = Party.CUSTOMER  # set by the runtime once the leg is paired
        self.uuid: uuidlib.UUID | None = None
        self.ended = False
        self._buf = bytearray()
        self._resamplers: dict[int, soxr.ResampleStream] = {}

    def receive_bytes(self, data: bytes) -> list[CallEvent | LegIdentified]:
        self._buf += data
        out: list[CallEvent | LegIdentified] = []
        while len(self._buf) >= 3 and not self.ended:
            kind, length = _HEADER.unpack_from(self._buf)
            if len(self._buf) < 3 + length:
                break
            payload = bytes(self._buf[3 : 3 + length])
            del self._buf[: 3 + length]
            out.extend(self._message(kind, payload))
        return out

    def _message(self, kind: int, payload: bytes) -> list[CallEvent | LegIdentified]:
        if kind == KIND_UUID:
            if self.uuid is not None or len(payload) != 16:
                raise ProtocolError(
                    ProtocolError.POLICY_VIOLATION, "AudioSocket UUID must be sent once, 16 bytes"
                )
            self.uuid = uuidlib.UUID(bytes=payload)
            return [LegIdentified(self.uuid)]
        if self.uuid is None:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION, f"AudioSocket kind 0x{kind:02x} before the UUID"
            )
        if kind in self.kind_rates:
            if len(payload) % 2:
                raise ProtocolError(ProtocolError.INVALID_PAYLOAD, "AudioSocket audio odd length")
            pcm = self._to_call_rate(self.kind_rates[kind], payload)
            return [PartyAudio(self.party, None, pcm)] if pcm else []
        if kind == KIND_DTMF:
            digit = payload[:1].decode("ascii", errors="replace")
            return [Dtmf(digit, self.party)]
        if kind == KIND_HANGUP:
            return [*self.flush(), Stopped("normal", "AudioSocket hangup")]
        if kind == KIND_ERROR:
            code = payload[0] if payload else 0
            if code & 0x01:
                return [*self.flush(), Stopped("normal", "calling party hung up")]
            name = ERROR_NAMES.get(code, f"error 0x{code:02x}")
            return [*self.flush(), Stopped("switch_error", f"AudioSocket {name}")]
        raise ProtocolError(ProtocolError.INVALID_PAYLOAD, f"unknown AudioSocket kind 0x{kind:02x}")

    def _to_call_rate(self, rate: int, payload: bytes) -> bytes:
        if rate == self.sample_rate:
            return payload
        stream = self._resamplers.get(rate)
        if stream is None:
            stream = self._resamplers[rate] = soxr.ResampleStream(
                rate, self.sample_rate, 1, dtype="int16", quality="HQ"
            )
        out = stream.resample_chunk(np.frombuffer(payload, dtype="<i2").astype(np.int16))
        return np.asarray(out, dtype="<i2").tobytes()

    def flush(self) -> list[CallEvent | LegIdentified]:
        """The leg ended: the resamplers' delayed tail, then nothing more is parsed."""
        self.ended = True
        out: list[CallEvent | LegIdentified] = []
        for stream in self._resamplers.values():
            tail = stream.resample_chunk(np.zeros(0, dtype=np.int16), last=True)
            if len(tail):
                out.append(PartyAudio(self.party, None, np.asarray(tail, "<i2").tobytes()))
        self._resamplers.clear()
        return out


class AudioSocketEncoder:
    """What Asterisk sends (simulator, tests)."""

    @staticmethod
    def message(kind: int, payload: bytes = b"") -> bytes:
        return _HEADER.pack(kind, len(payload)) + payload

    @classmethod
    def uuid(cls, leg: uuidlib.UUID) -> bytes:
        return cls.message(KIND_UUID, leg.bytes)

    @classmethod
    def audio(cls, pcm: bytes, kind: int = 0x10) -> bytes:
        return cls.message(kind, pcm)

    @classmethod
    def dtmf(cls, digit: str) -> bytes:
        return cls.message(KIND_DTMF, digit.encode("ascii")[:1])

    @classmethod
    def hangup(cls) -> bytes:
        return cls.message(KIND_ERROR, b"\x01")

    @classmethod
    def terminate(cls) -> bytes:
        return cls.message(KIND_HANGUP)
