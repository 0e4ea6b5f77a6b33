"""Asterisk AudioSocket: a raw TCP server on its own port; two legs (or more) make one call.

Asterisk dials us once per leg (`AudioSocket(<uuid>,host:port)`), each connection carrying one
mono leg. `monitor.wire.audiosocket.leg_of` maps the leg's UUID to (call key, party); the first
leg of a key opens the call (two parties, one channel each) and the second joins it: its audio
starts at the call's current media time (`CallFeed.align`), and until it joins the missing
party is silence (the timeline's lag fill). Further legs of a side (a transfer, a barge-in,
a conference; at most `MAX_LEGS_PER_SIDE` at once) join that side's channel through its
`SideMixer` (monitor/wire/legmix.py says how such calls are stored). The call ends when its
last leg ends; it is "completed" when every leg ended with a hangup message, else
"interrupted".

Admission: the peer address must be in `switch_auth.audiosocket_allow` (else the socket is
closed at once, logged without payload); the gateway's `max_calls` counts these calls too.
A leg that sends no audio for `stall_timeout_s` is stalled; one that breaks the protocol is cut
(its call goes on with the other leg, and ends interrupted).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid as uuidlib
from dataclasses import dataclass, field, replace

from config.settings import Settings
from monitor.core.events import Party
from monitor.core.metadata import CallMetadata
from monitor.errors import ProtocolError
from monitor.runtime.call import SHUTDOWN_ASR_WAIT_S
from monitor.runtime.feed import CallFeed
from monitor.runtime.gateway import Gateway
from monitor.runtime.logs import fields
from monitor.wire import auth
from monitor.wire.audiosocket import (
    KIND_RATES,
    PROTOCOL_NAME,
    AudioSocketDecoder,
    AudioSocketEncoder,
    LegIdentified,
    leg_of,
)
from monitor.wire.events import CallStarted, Dtmf, PartyAudio, Stopped
from monitor.wire.legmix import SideMixer

log = logging.getLogger("callwatch.audiosocket")
READ_BYTES = 65536
#: After a read timed out, the socket is read once more before the leg counts as stalled: a
#: loop starved of CPU for longer than the stall timeout wakes with the timeout and the
#: leg's audio due at once, and audio that is there must win (RELIABILITY.md L1 at 40 calls
#: closed live calls `stalled` this way).
STALL_GRACE_S = 0.2
#: Legs of one side at the same time (agent + supervisor + conference guests): bounded work.
MAX_LEGS_PER_SIDE = 4


@dataclass
class _JoinedCall:
    key: str
    feed: CallFeed
    mixers: dict[Party, SideMixer]
    legs: dict[str, Party] = field(default_factory=dict)  # connected legs by leg id
    ended: dict[str, tuple[Party, str]] = field(default_factory=dict)  # how each leg ended
    count: int = 0  # legs ever joined (leg ids)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AudioSocketServer:
    def __init__(self, settings: Settings, gateway: Gateway) -> None:
        self._settings = settings
        self._cfg = settings.gateway
        self._gateway = gateway
        self._server: asyncio.Server | None = None
        self._calls: dict[str, _JoinedCall] = {}
        self._writers: set[asyncio.StreamWriter] = set()
        kinds = dict(KIND_RATES)
        kinds.update(self._cfg.audiosocket_kind_rates)
        self._kind_rates = kinds

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self._cfg.host, self._cfg.audiosocket_port
        )
        log.info("audiosocket listening on tcp://%s:%d", self._cfg.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()  # each leg's handler then finalises its call
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = writer.get_extra_info("peername")[:2]
        peer = f"{host}:{port}"
        if not auth.peer_allowed(host, self._settings.switch_auth.audiosocket_allow):
            log.warning("audiosocket peer refused: not in switch_auth.audiosocket_allow",
                        extra=fields(peer=peer))  # fmt: skip
            writer.close()
            return
        self._writers.add(writer)
        decoder = AudioSocketDecoder(
            sample_rate=self._cfg.audiosocket_sample_rate, kind_rates=self._kind_rates
        )
        joined: _JoinedCall | None = None
        party = Party.CUSTOMER
        leg_id = ""
        ended = "transport"
        try:
            while not decoder.ended:
                timeout = self._cfg.metadata_timeout_s if joined is None else (
                    self._cfg.stall_timeout_s)  # fmt: skip
                data = await _read(reader, timeout)
                if data is None:
                    ended = "stalled" if joined else "no_uuid"
                    if joined is not None and joined.feed.call is not None:
                        await joined.feed.call.trace(
                            "stall", party=party.value, reason="stalled",
                            detail=f"no audio for {self._cfg.stall_timeout_s:g} s",
                        )  # fmt: skip
                    break
                if not data:
                    ended = "closed_by_switch"
                    for event in decoder.flush():  # a resampler's delayed tail
                        if joined is not None and isinstance(event, PartyAudio):
                            await self._audio(joined, leg_id, event, time.monotonic())
                    break
                now = time.monotonic()
                for event in decoder.receive_bytes(data):
                    if isinstance(event, LegIdentified):
                        joined, party, leg_id = await self._join(event.uuid, peer, decoder)
                    elif isinstance(event, Stopped):
                        ended = "normal" if event.reason == "normal" else event.reason
                        assert joined is not None
                        await joined.feed.handle(event, now)
                    elif joined is not None:
                        # Parsed in the same read as the UUID: before the leg's party was known.
                        if isinstance(event, PartyAudio | Dtmf) and event.party is not party:
                            event = replace(event, party=party)
                        if isinstance(event, PartyAudio):
                            await self._audio(joined, leg_id, event, now)
                        else:
                            await joined.feed.handle(event, now)
        except ProtocolError as exc:
            ended = "protocol_error"
            log.warning("audiosocket protocol error: %s", exc.reason, extra=fields(peer=peer))
            if joined is not None and joined.feed.call is not None:
                await joined.feed.call.trace(
                    "protocol_error", party=party.value, code=exc.close_code, reason=exc.reason
                )
            writer.write(AudioSocketEncoder.terminate())
        except (ConnectionError, asyncio.IncompleteReadError):
            ended = "transport"
        finally:
            self._writers.discard(writer)
            writer.close()
            if joined is not None:
                await asyncio.shield(self._leave(joined, leg_id, ended))

    @staticmethod
    async def _audio(joined: _JoinedCall, leg_id: str, event: PartyAudio, now: float) -> None:
        """A leg's audio, mixed with the other legs of its side (passed through when alone)."""
        pcm = joined.mixers[event.party].push(leg_id, event.pcm)
        if pcm:
            await joined.feed.handle(replace(event, pcm=pcm), now)

    async def _join(
        self, leg: uuidlib.UUID, peer: str, decoder: AudioSocketDecoder
    ) -> tuple[_JoinedCall, Party, str]:
        key, party = leg_of(leg, self._cfg.audiosocket_legs)
        decoder.party = party
        joined = self._calls.get(key)
        if joined is None:
            if self._gateway.at_capacity() or self._gateway.stopping:
                raise ProtocolError(ProtocolError.TRY_AGAIN_LATER, "too many concurrent calls")
            feed = CallFeed(
                self._cfg,
                lambda started: self._gateway.factory.new_call(started, PROTOCOL_NAME, peer),
                protocol=PROTOCOL_NAME,
                now=time.monotonic(),
                shared=self._gateway.ingest,
            )
            lag = self._cfg.max_party_lag_ms * self._cfg.audiosocket_sample_rate // 1000
            joined = _JoinedCall(key, feed, {p: SideMixer(max(1, lag)) for p in Party})
            self._calls[key] = joined
            self._gateway.extra_calls += 1
            rate = self._cfg.audiosocket_sample_rate
            meta = CallMetadata(
                external_id=key,
                sample_rate=rate,
                channels=2,
                channel_of={Party.CUSTOMER: 0, Party.AGENT: 1},
                extra={"legs": "two AudioSocket connections, one per party"},
            )
            started = CallStarted(meta, f'{{"uuid":"{key}"}}', "L16", {"first_leg": str(leg)})
            await feed.handle(started, time.monotonic())
        mixer = joined.mixers[party]
        if mixer.legs >= MAX_LEGS_PER_SIDE:
            raise ProtocolError(
                ProtocolError.POLICY_VIOLATION,
                f"AudioSocket: {MAX_LEGS_PER_SIDE} {party.value} legs connected at once",
            )
        # A side that had a leg before: a transfer (none left now) or a barge-in/conference.
        mode = None
        if any(p is party for p, _ in joined.ended.values()) or mixer.legs:
            mode = "conference" if mixer.legs else "transfer"
        joined.count += 1
        leg_id = f"{leg}#{joined.count}"
        joined.legs[leg_id] = party
        if not mixer.legs:
            await joined.feed.align(party)  # the side's channel goes on from now
        mixer.join(leg_id)
        if joined.feed.call is not None:
            await joined.feed.call.trace("leg_uuid", party=party.value, uuid=str(leg))
            if mode is not None:
                await joined.feed.call.trace(
                    "participant_joined", party=party.value, uuid=str(leg), mode=mode,
                    legs=mixer.legs,
                )  # fmt: skip
        return joined, party, leg_id

    async def _leave(self, joined: _JoinedCall, leg_id: str, how: str) -> None:
        async with joined.lock:
            party = joined.legs.pop(leg_id)
            joined.ended[leg_id] = (party, how)
            mixer = joined.mixers[party]
            tail = mixer.leave(leg_id)
            if tail:
                await joined.feed.handle(PartyAudio(party, None, tail), time.monotonic())
            if not mixer.legs:
                await joined.feed.leg_left(party)
            if joined.feed.call is not None:
                await joined.feed.call.trace(
                    "leg_ended", party=party.value, reason=how, legs=mixer.legs
                )
            if joined.legs or self._calls.get(joined.key) is not joined:
                return
            del self._calls[joined.key]
            self._gateway.extra_calls -= 1
        clean = all(h == "normal" for _, h in joined.ended.values())
        reasons = sorted({h for _, h in joined.ended.values()})
        stopping = self._gateway.stopping
        try:
            await joined.feed.finish(
                status="completed" if clean else "interrupted",
                reason="normal" if clean else ("shutdown" if stopping else reasons[-1]),
                detail=", ".join(f"{p.value}: {h}" for p, h in joined.ended.values()),
                asr_wait_s=SHUTDOWN_ASR_WAIT_S if stopping else self._settings.asr.final_wait_s,
            )
        finally:  # the registry entry goes whatever happened while finalising
            if joined.feed.call is not None:
                self._gateway.calls.release(joined.feed.call)  # the CallRegistry


async def _read(reader: asyncio.StreamReader, timeout_s: float) -> bytes | None:
    """Up to `READ_BYTES`; None when nothing came within `timeout_s`, nor within
    `STALL_GRACE_S` after it (what a starved loop had not yet read is taken first)."""
    for limit in (timeout_s, STALL_GRACE_S):
        try:
            async with asyncio.timeout(limit):
                return await reader.read(READ_BYTES)
        except TimeoutError:
            continue
    return None
