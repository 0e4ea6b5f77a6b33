"""Stream a rendered call as Twilio, Genesys AudioHook or Asterisk AudioSocket would.

Each sender uses the gateway's own encoder for that protocol (`monitor.wire.*Encoder`), so the
simulator cannot drift from what the gateway accepts. Audio goes out in 20 ms steps (AudioHook:
100 ms frames, as Genesys sends), paced against the wall clock (`pace` x real time, 0 = flat
out). The call's IVR events are sent the way each protocol can carry them: Twilio `dtmf`,
AudioHook `dtmf`, AudioSocket kind 0x03 - prompts, queue and hold exist only as audio there
(a real deployment learns them from the switch's webhooks); the audio fork sends all of them
as `send_text` JSON (see `ivr_sim.stream`).

Twilio and AudioHook are μ-law 8 kHz only: a 16 kHz call is resampled to 8 kHz first.
AudioSocket legs are two TCP connections whose UUIDs differ only in the last hex digit
(even = customer, odd = agent), the pairing convention of `monitor.wire.audiosocket.leg_of`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import resample_poly
from websockets.asyncio.client import ClientConnection

from ivr_sim.script import RenderedCall
from monitor.wire.audiohook import AudioHookEncoder
from monitor.wire.audiosocket import AudioSocketEncoder
from monitor.wire.twilio import TwilioEncoder

STEP_MS = 20


def audio_8k(call: RenderedCall) -> npt.NDArray[np.int16]:
    """(frames, 2) int16 at 8 kHz: what a G.711 switch carries."""
    if call.sample_rate == 8000:
        return call.audio
    x = resample_poly(call.audio.astype(np.float64), 1, call.sample_rate // 8000, axis=0)
    out: npt.NDArray[np.int16] = np.clip(np.rint(x), -32768, 32767).astype(np.int16)
    return out


class Pacer:
    def __init__(self, pace: float, rate: int) -> None:
        self.pace, self.rate, self.t0 = pace, rate, time.monotonic()

    async def wait(self, frames_sent: int) -> None:
        if self.pace > 0:
            delay = self.t0 + frames_sent / self.rate / self.pace - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)


def _due(call: RenderedCall, upto_s: float, sent: int) -> list[Any]:
    """The call's events not yet sent whose time falls before `upto_s`."""
    return [e for e in call.events[sent:] if e.at_s < upto_s]


async def send_twilio(
    ws: ClientConnection, call: RenderedCall, meta: Mapping[str, Any], pace: float
) -> None:
    enc = TwilioEncoder(stream_sid="MZ" + uuid.uuid4().hex, call_sid=str(meta["callid"]))
    custom = {k: str(v) for k, v in meta.items() if k not in ("callid", "sampleRate", "mixType")}
    await ws.send(enc.connected())
    await ws.send(enc.start(["inbound", "outbound"], custom))
    audio = audio_8k(call)
    step = 8000 * STEP_MS // 1000
    pacer, done = Pacer(pace, 8000), 0
    for start in range(0, audio.shape[0], step):
        for ev in _due(call, (start + step) / 8000, done):
            done += 1
            if ev.kind == "dtmf":
                await ws.send(enc.dtmf(ev.data["digit"]))
        ms = start * 1000 // 8000
        await ws.send(enc.media("inbound", ms, audio[start : start + step, 0].tobytes()))
        await ws.send(enc.media("outbound", ms, audio[start : start + step, 1].tobytes()))
        await pacer.wait(start + step)
    await ws.send(enc.stop())


async def send_audiohook(
    ws: ClientConnection, call: RenderedCall, meta: Mapping[str, Any], pace: float
) -> None:
    enc = AudioHookEncoder(session_id=str(uuid.uuid4()))
    custom = {k: str(v) for k, v in meta.items() if k not in ("callid", "from", "to")}
    await ws.send(enc.open(conversation_id=str(meta["callid"]), ani=str(meta.get("from", "")),
                           dnis=str(meta.get("to", "")), **custom))  # fmt: skip
    opened = enc.receive(str(await asyncio.wait_for(ws.recv(), 10)))
    if opened.get("type") != "opened":
        raise RuntimeError(f"AudioHook server answered {opened.get('type')!r}, not opened")
    audio = audio_8k(call)
    step, ping_every = 800, 5 * 8000  # 100 ms frames; a ping every 5 s of audio
    pacer, done, next_ping = Pacer(pace, 8000), 0, ping_every
    for start in range(0, audio.shape[0], step):
        for ev in _due(call, (start + step) / 8000, done):
            done += 1
            if ev.kind == "dtmf":
                await ws.send(enc.dtmf(ev.data["digit"]))
        await ws.send(enc.audio(audio[start : start + step].astype("<i2").tobytes()))
        if start + step >= next_ping:
            next_ping += ping_every
            await ws.send(enc.ping())
            enc.receive(str(await asyncio.wait_for(ws.recv(), 10)))
        await pacer.wait(start + step)
    await ws.send(enc.close("end"))
    closed = enc.receive(str(await asyncio.wait_for(ws.recv(), 30)))
    if closed.get("type") != "closed":
        raise RuntimeError(f"AudioHook server answered {closed.get('type')!r}, not closed")


def leg_uuids(call_id: str) -> tuple[uuid.UUID, uuid.UUID]:
    """Customer and agent leg UUIDs for one call (parity of the last hex digit)."""
    base = uuid.uuid5(uuid.NAMESPACE_URL, call_id).hex[:-1]
    return uuid.UUID(base + "0"), uuid.UUID(base + "1")


async def send_audiosocket(
    host: str, port: int, call: RenderedCall, meta: Mapping[str, Any], pace: float,
    *, rate: int = 8000,
) -> None:  # fmt: skip
    """Two TCP legs (customer, agent) streaming slin in 20 ms messages, then hang up."""
    audio = audio_8k(call) if rate == 8000 else call.audio
    kind = 0x10 if rate == 8000 else 0x12
    legs = [await asyncio.open_connection(host, port) for _ in range(2)]
    try:
        for (_, writer), leg in zip(legs, leg_uuids(str(meta["callid"])), strict=True):
            writer.write(AudioSocketEncoder.uuid(leg))
            await writer.drain()
        # Both legs up before audio, as Asterisk bridges them. The server aligns a leg that
        # joins late at the call's current media time; a busy server needs a moment to
        # read the second UUID before the first leg's flat-out audio (pace 0) arrives.
        await asyncio.sleep(1.0)
        step = rate * STEP_MS // 1000
        pacer, done = Pacer(pace, rate), 0
        for start in range(0, audio.shape[0], step):
            for ev in _due(call, (start + step) / rate, done):
                done += 1
                if ev.kind == "dtmf":
                    legs[0][1].write(AudioSocketEncoder.dtmf(ev.data["digit"]))
            for ch, (_, writer) in enumerate(legs):
                writer.write(AudioSocketEncoder.audio(audio[start : start + step, ch].tobytes(),
                                                      kind))  # fmt: skip
            await asyncio.gather(*(w.drain() for _, w in legs))
            await pacer.wait(start + step)
        for _, writer in legs:
            writer.write(AudioSocketEncoder.hangup())
            await writer.drain()
    finally:
        for _, writer in legs:
            writer.close()


Sender = Callable[[ClientConnection, RenderedCall, Mapping[str, Any], float], Awaitable[None]]
WS_SENDERS: dict[str, tuple[str, Sender]] = {
    "twilio": ("/twilio", send_twilio),
    "audiohook": ("/audiohook", send_audiohook),
}
