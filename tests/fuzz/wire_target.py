"""Coverage-guided fuzzing of the switch codecs with Atheris (RELIABILITY.md §10 F2).

Run by `tests/test_fuzz_wire.py` (marked `long`) as its own process:

    python -m tests.fuzz.wire_target tests/data/fuzz/wire -max_total_time=60 -rss_limit_mb=200

One input is a codec (its first byte) and a short session of websocket messages for it, in a
framing that is easy to write seeds in: each message is a kind byte (even: text, odd: binary),
a 2-byte big-endian length and that many bytes (text is decoded as UTF-8, bad bytes replaced).
The oracle is the codecs' contract (monitor/errors.py): every message either yields
events or raises `ProtocolError` with close code 1003/1007/1008 and a reason that fits a close
frame; any other exception is a crash, which libFuzzer saves as `crash-<sha1>` for a regression
fixture. `make_seeds` writes the seed corpus (real sessions from each codec's encoder).
"""

from __future__ import annotations

import struct
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import atheris

with atheris.instrument_imports(include=["monitor.wire", "monitor.core", "monitor.errors"]):
    from monitor.errors import ProtocolError
    from monitor.wire.audiofork import AudioForkDecoder, AudioForkEncoder
    from monitor.wire.audiohook import AudioHookDecoder, AudioHookEncoder
    from monitor.wire.audiosocket import AudioSocketDecoder, AudioSocketEncoder
    from monitor.wire.twilio import TwilioDecoder, TwilioEncoder

DECODERS: list[Callable[[], Any]] = [
    AudioForkDecoder, TwilioDecoder, AudioHookDecoder, AudioSocketDecoder,
]  # fmt: skip
MAX_MESSAGES = 16


def messages(data: bytes) -> list[str | bytes]:
    out: list[str | bytes] = []
    i = 1
    while i + 3 <= len(data) and len(out) < MAX_MESSAGES:
        kind, size = data[i], struct.unpack(">H", data[i + 1 : i + 3])[0]
        body = data[i + 3 : i + 3 + size]
        i += 3 + size
        out.append(body if kind & 1 else body.decode("utf-8", "replace"))
    return out


def test_one_input(data: bytes) -> None:
    if not data:
        return
    dec = DECODERS[data[0] % len(DECODERS)]()
    for message in messages(data):
        try:
            if isinstance(message, str):
                if not hasattr(dec, "receive_text"):
                    continue  # AudioSocket is a byte stream: no text frames exist
                dec.receive_text(message)
            else:
                dec.receive_bytes(message)
        except ProtocolError as exc:
            if exc.close_code not in (1003, 1007, 1008) or len(exc.reason.encode()) > 123:
                raise AssertionError(f"bad ProtocolError: {exc.close_code} {exc.reason!r}") from exc


def frame(codec: int, session: list[str | bytes]) -> bytes:
    out = bytes([codec])
    for m in session:
        body = m.encode() if isinstance(m, str) else m
        out += bytes([0 if isinstance(m, str) else 1]) + struct.pack(">H", len(body)) + body
    return out


def make_seeds(folder: Path) -> None:
    """Real sessions from the codecs' own encoders, one file per codec and shape."""
    pcm = bytes(range(256)) * 5  # 640 bytes: 20 ms of 8 kHz stereo L16
    fork = [AudioForkEncoder.metadata({"callid": "c1", "sampleRate": 8000, "mixType": "stereo"}),
            *AudioForkEncoder.audio(pcm * 2, 640), '{"event":"hold"}',
            AudioForkEncoder.graceful_shutdown()]  # fmt: skip
    tw = TwilioEncoder(stream_sid="MZ" + "0" * 32, call_sid="CA" + "0" * 32)
    twilio = [tw.connected(), tw.start(["inbound", "outbound"], {"agent": "a1"}),
              tw.media("inbound", 0, pcm[:320]), tw.media("outbound", 0, pcm[:320]),
              tw.dtmf("5"), tw.mark("m1"), tw.stop()]  # fmt: skip
    hook = AudioHookEncoder(session_id=str(uuid.UUID(int=1)))
    audiohook = [hook.open(conversation_id=str(uuid.UUID(int=2)), ani="+1555", dnis="+1666"),
                 hook.audio(pcm), hook.ping(), hook.paused(), hook.resumed(0.5),
                 hook.dtmf("7"), hook.close()]  # fmt: skip
    sock = [AudioSocketEncoder.uuid(uuid.UUID(int=3)), AudioSocketEncoder.audio(pcm[:320]),
            AudioSocketEncoder.dtmf("5"), AudioSocketEncoder.hangup()]  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    for codec, (name, session) in enumerate(
        [("audiofork", fork), ("twilio", twilio), ("audiohook", audiohook), ("audiosocket", sock)]
    ):
        (folder / f"seed-{name}").write_bytes(frame(codec, session))
        (folder / f"seed-{name}-start").write_bytes(frame(codec, session[:2]))


def main() -> None:
    if sys.argv[1:2] == ["--make-seeds"]:
        make_seeds(Path(sys.argv[2]))
        return
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
