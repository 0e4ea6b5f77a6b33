"""Stream a rendered call to a gateway as a switch would: audio fork (default), Twilio,
AudioHook or AudioSocket (`protocol=`; the last three live in `ivr_sim.protocols`).

Uses the gateway's own encoder (`monitor.wire.audiofork.AudioForkEncoder`), so the simulator
cannot drift from what the gateway accepts. Pacing: `pace=1.0` is real time (20 ms of audio
every 20 ms), `pace=10` ten times faster, `pace=0` as fast as the socket takes it. Frame sizes
are 20 ms by default; `chunk_sizes` lets a test send arbitrary (even odd-byte) message sizes,
as the real module does when it flushes whatever it has buffered.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from ivr_sim.protocols import WS_SENDERS, leg_uuids, send_audiosocket
from ivr_sim.script import RenderedCall, SimEvent
from monitor.wire.audiofork import AudioForkEncoder

PROTOCOLS = ("audiofork", "twilio", "audiohook", "audiosocket")


@dataclass(frozen=True, slots=True)
class StreamReport:
    external_id: str
    bytes_sent: int
    messages: int
    audio_s: float
    wall_s: float
    close_code: int | None
    subprotocol: str | None


def call_metadata(call: RenderedCall, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The first text frame: script metadata + audio layout + a fresh call id."""
    meta: dict[str, Any] = {"callid": str(uuid.uuid4())}
    meta.update(call.script.metadata)
    meta.update({"sampleRate": call.sample_rate, "mixType": "stereo"})
    meta.update(extra or {})
    return meta


def _chunks(pcm: bytes, sizes: Iterable[int] | None, default: int) -> Iterator[bytes]:
    if sizes is None:
        yield from AudioForkEncoder.audio(pcm, default)
        return
    pos = 0
    for size in sizes:
        if pos >= len(pcm):
            return
        yield pcm[pos : pos + size]
        pos += size
    if pos < len(pcm):
        yield from AudioForkEncoder.audio(pcm[pos:], default)


async def stream_call(
    url: str,
    call: RenderedCall,
    *,
    pace: float = 1.0,
    chunk_ms: int = 20,
    chunk_sizes: Iterable[int] | None = None,
    metadata: Mapping[str, Any] | None = None,
    graceful: bool = True,
    subprotocol: str = AudioForkEncoder.subprotocol,
    headers: Mapping[str, str] | None = None,
    protocol: str = "audiofork",
    ssl: SSLContext | None = None,
) -> StreamReport:
    """Connect, send metadata, stream the audio, then close like a switch hanging up.
    `url`: the gateway's ws(s):// URL (the protocol's path is added when it has none), or
    tcp://host:port for AudioSocket."""
    meta = dict(metadata) if metadata is not None else call_metadata(call)
    if protocol != "audiofork":
        return await _stream_other(url, call, meta, pace, protocol, headers, ssl)
    frame_bytes = 4  # stereo L16
    chunk = max(frame_bytes, call.sample_rate * chunk_ms // 1000 * frame_bytes)
    pcm = call.pcm()
    bytes_per_s = call.sample_rate * frame_bytes
    sent = messages = 0
    t0 = time.monotonic()
    async with connect(
        url,
        subprotocols=[Subprotocol(subprotocol)],
        compression=None,
        additional_headers=dict(headers or {}),
        max_size=None,
        ssl=ssl,
    ) as ws:
        await ws.send(AudioForkEncoder.metadata(meta))
        done = 0
        for piece in _chunks(pcm, chunk_sizes, chunk):
            for ev in call.events[done:]:
                if ev.at_s * bytes_per_s > sent + len(piece):
                    break
                done += 1
                await ws.send(fork_text(ev))
            await ws.send(piece)
            sent += len(piece)
            messages += 1
            if pace > 0:
                due = t0 + sent / bytes_per_s / pace
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
        if graceful:
            await ws.send(AudioForkEncoder.graceful_shutdown())
        await ws.close(1000, "call ended")
        code = ws.close_code
        negotiated = ws.subprotocol
    return StreamReport(
        external_id=str(meta.get("callid", "")),
        bytes_sent=sent,
        messages=messages,
        audio_s=len(pcm) / bytes_per_s,
        wall_s=time.monotonic() - t0,
        close_code=code,
        subprotocol=negotiated,
    )


def fork_text(event: SimEvent) -> str:
    """An IVR event as the dialplan/app would push it with `uuid_audio_fork ... send_text`."""
    return AudioForkEncoder.metadata({"event": event.kind, **event.data})


async def _stream_other(
    url: str,
    call: RenderedCall,
    meta: dict[str, Any],
    pace: float,
    protocol: str,
    headers: Mapping[str, str] | None,
    ssl: SSLContext | None,
) -> StreamReport:
    t0 = time.monotonic()
    external = str(meta["callid"])
    if protocol == "audiosocket":
        hostport = url.split("://", 1)[-1].rstrip("/")
        host, _, port = hostport.rpartition(":")
        await send_audiosocket(host, int(port), call, meta, pace)
        code, negotiated = None, None
        external = str(leg_uuids(external)[0])
    elif protocol in WS_SENDERS:
        path, sender = WS_SENDERS[protocol]
        scheme, _, rest = url.partition("://")
        if "/" not in rest:
            url = f"{scheme}://{rest}{path}"
        async with connect(
            url,
            compression=None,
            additional_headers=dict(headers or {}),
            max_size=None,
            ssl=ssl,
        ) as ws:
            await sender(ws, call, meta, pace)
            await ws.wait_closed()
            code, negotiated = ws.close_code, ws.subprotocol
    else:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    return StreamReport(
        external_id=external,
        bytes_sent=call.audio.size * 2,
        messages=0,
        audio_s=call.duration_s,
        wall_s=time.monotonic() - t0,
        close_code=code,
        subprotocol=negotiated,
    )
