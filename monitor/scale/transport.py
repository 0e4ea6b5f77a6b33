"""The JetStream event transport (scale-out): live events between nodes, as opaque bytes.

This module owns moving serialised events; what they mean is the event vocabulary's
(`monitor.events`, each event's `to_json`/`from_json`). Three parts:

* `EventPublisher` - `publish(call_id, payload, msg_id)` never blocks the caller: the message
  goes into a bounded in-memory buffer that a sender task drains in order to the stream
  `<PREFIX>_EVENTS` (subjects `<prefix>.events.<call id>`), waiting for each batch's acks.
  While NATS is unreachable the buffer holds what is published, and it is sent after
  reconnection. The bound (`bus.buffer_events` / `bus.buffer_bytes`) is shared out so that
  droppable messages (readings, trace) may fill only `SHEDDABLE_SHARE` of it, keeping room
  for essential ones (lifecycle, segments, alerts). A message that finds no room is dropped,
  counted (`dropped`, `dropped_essential`) and reported through `on_drop` and the log,
  never silently. Every message carries `Nats-Msg-Id` = `msg_id`, so a batch re-sent after
  a lost ack is stored once (the stream's duplicate window).
* `DurableConsumer` - a durable pull consumer: `handler(subject, payload, msg_id)` is awaited
  for each message and the message acknowledged only after it returned (at least once: a
  handler that raised, or a consumer that died before the ack, gets it again after
  `ack_wait_s`). `max_ack_pending` bounds what is in flight (back-pressure on the stream, not
  memory here). Storage writers use it; apply must be idempotent (it is: the keys of rows).
* `EventSubscriber` - every message on `<prefix>.events.>` as it is published, no replay
  (NATS core delivery of the same subjects): what a board hub needs to show every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from config.settings import BusSettings

log = logging.getLogger("callwatch.bus.events")

#: Of the buffer bound, the part droppable messages may use.
SHEDDABLE_SHARE = 0.8
#: Messages sent before their acks are awaited together.
SEND_BATCH = 64
RETRY_PAUSE_S = 0.25

Handler = Callable[[str, bytes, str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Incoming:
    """One message handed to a batch handler; `deliveries` counts this one (1 = first)."""

    subject: str
    payload: bytes
    msg_id: str
    deliveries: int


#: A batch handler says, per message, whether it is done (ack) or wants it again (nak).
BatchHandler = Callable[[list[Incoming]], Awaitable[list[bool]]]


def stream_name(prefix: str) -> str:
    return f"{prefix.upper().replace('-', '_')}_EVENTS"


def events_subject(prefix: str, call_id: str = ">") -> str:
    if call_id != ">" and (not call_id or any(c in call_id for c in ".*> \t\r\n")):
        raise ValueError(f"call id {call_id!r} cannot be a subject token")
    return f"{prefix}.events.{call_id}"


async def ensure_stream(nc: Client, bus: BusSettings, *, max_age_s: float = 86_400.0) -> str:
    """Create the events stream if missing (same config from every node); its name."""
    name = stream_name(bus.prefix)
    js = nc.jetstream()
    config = StreamConfig(
        name=name,
        subjects=[events_subject(bus.prefix)],
        storage=StorageType.FILE,
        max_age=max_age_s,
        max_msg_size=bus.max_message_bytes,
        duplicate_window=120.0,
    )
    try:
        await js.stream_info(name)
    except NotFoundError:
        with contextlib.suppress(BadRequestError):  # another node created it meanwhile
            await js.add_stream(config)
    return name


@dataclass(frozen=True, slots=True)
class _Out:
    subject: str
    payload: bytes
    msg_id: str
    essential: bool


class EventPublisher:
    """Create, `start()`, `publish(...)`, `await close()` (sends what is buffered, bounded)."""

    def __init__(
        self,
        nc: Client,
        bus: BusSettings,
        *,
        on_drop: Callable[[str, str, bool], None] | None = None,
    ) -> None:
        self._nc = nc
        self._bus = bus
        self._prefix = bus.prefix
        self._max_events = bus.buffer_events
        self._max_bytes = bus.buffer_bytes
        self._on_drop = on_drop
        self._buffer: deque[_Out] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set while the buffer is empty
        self._drained.set()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.dropped = 0
        self.dropped_essential = 0
        self.resent = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def start(self) -> None:
        await ensure_stream(self._nc, self._bus)
        self._task = asyncio.create_task(self._send_loop(), name="event-publisher")

    def publish(self, call_id: str, payload: bytes, msg_id: str, *, essential: bool = True) -> bool:
        """Queue one message; False when it was dropped for want of room (counted)."""
        share = 1.0 if essential else SHEDDABLE_SHARE
        size = len(payload)
        if (
            len(self._buffer) + 1 > self._max_events * share
            or self._bytes + size > self._max_bytes * share
        ):
            self._drop(events_subject(self._prefix, call_id), msg_id, essential)
            return False
        self._buffer.append(_Out(events_subject(self._prefix, call_id), payload, msg_id, essential))
        self._bytes += size
        self._drained.clear()
        self._wake.set()
        return True

    def _drop(self, subject: str, msg_id: str, essential: bool) -> None:
        self.dropped += 1
        self.dropped_essential += essential
        if self.dropped == 1 or self.dropped % 1000 == 0 or essential:
            log.log(
                logging.ERROR if essential else logging.WARNING,
                "event buffer full (%d events, %d bytes; NATS unreachable or slow): dropped "
                "%d event(s) so far, %d essential; raise bus.buffer_events / buffer_bytes",
                len(self._buffer),
                self._bytes,
                self.dropped,
                self.dropped_essential,
            )
        if self._on_drop is not None:
            self._on_drop(subject, msg_id, essential)

    async def _send_loop(self) -> None:
        js = self._nc.jetstream()
        while True:
            if not self._buffer:
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._nc.is_connected:
                # Hold everything here (bounded) rather than in the client's own buffer.
                await asyncio.sleep(RETRY_PAUSE_S)
                continue
            batch = [self._buffer[i] for i in range(min(SEND_BATCH, len(self._buffer)))]
            acks = await asyncio.gather(
                *(
                    js.publish(m.subject, m.payload, timeout=5.0,
                               headers={"Nats-Msg-Id": m.msg_id})
                    for m in batch
                ),
                return_exceptions=True,
            )  # fmt: skip
            # Done up to the first failure; from it on, sent again (duplicates are dropped
            # by the stream through Nats-Msg-Id), so the order stays as published.
            ok = next((i for i, a in enumerate(acks) if isinstance(a, BaseException)), len(acks))
            for _ in range(ok):
                done = self._buffer.popleft()
                self._bytes -= len(done.payload)
            self.published += ok
            if ok < len(acks):
                self.resent += len(acks) - ok
                err = acks[ok]
                log.debug("event publish failed, will resend: %s", err)
                await asyncio.sleep(RETRY_PAUSE_S)

    async def close(self, timeout_s: float = 10.0) -> None:
        """Send what is buffered (up to `timeout_s`), then stop; what is left is counted."""
        if self._task is None:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                await self._drained.wait()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        for left in list(self._buffer):
            self._drop(left.subject, left.msg_id, left.essential)
        self._buffer.clear()
        self._bytes = 0


class DurableConsumer:
    """A durable pull consumer on every events subject; ack after `handler` returned."""

    def __init__(
        self,
        nc: Client,
        bus: BusSettings,
        durable: str,
        handler: Handler | None = None,
        *,
        batch_handler: BatchHandler | None = None,
        batch: int = 100,
        ack_wait_s: float = 30.0,
        max_ack_pending: int = 1000,
    ) -> None:
        self._nc = nc
        self._bus = bus
        self._durable = durable
        if (handler is None) == (batch_handler is None):
            raise ValueError("give one of handler and batch_handler")
        self._handler = handler
        self._batch_handler = batch_handler
        self._batch = batch
        self._config = ConsumerConfig(
            durable_name=durable, ack_wait=ack_wait_s, max_ack_pending=max_ack_pending
        )
        self._task: asyncio.Task[None] | None = None
        self.applied = 0
        self.failed = 0

    async def start(self) -> None:
        stream = await ensure_stream(self._nc, self._bus)
        sub = await self._nc.jetstream().pull_subscribe(
            events_subject(self._bus.prefix), durable=self._durable, stream=stream,
            config=self._config,
        )  # fmt: skip
        self._task = asyncio.create_task(self._run(sub), name=f"consumer-{self._durable}")

    async def _run(self, sub: object) -> None:
        while True:
            try:
                msgs: list[Msg] = await sub.fetch(self._batch, timeout=1.0)  # type: ignore[attr-defined]
            except asyncio.CancelledError:
                raise
            except Exception:  # nothing waiting (timeout), or the bus is away: ask again
                if not self._nc.is_connected:
                    await asyncio.sleep(RETRY_PAUSE_S)
                continue
            if self._batch_handler is not None:
                await self._apply_batch(msgs)
                continue
            assert self._handler is not None
            applied: list[Msg] = []
            for msg in msgs:
                msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
                try:
                    await self._handler(msg.subject, msg.data, msg_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    self.failed += 1
                    log.exception("event handler failed (%s); redelivered later", exc)
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=1.0)
                    continue
                applied.append(msg)
            # Acked once applied, and confirmed by the server (a lost ack means redelivery,
            # which idempotent apply absorbs, but a confirmed one keeps redeliveries rare).
            await asyncio.gather(*(m.ack_sync(timeout=5.0) for m in applied),
                                 return_exceptions=True)  # fmt: skip
            self.applied += len(applied)

    async def _apply_batch(self, msgs: list[Msg]) -> None:
        """One call of the batch handler for a whole fetch (one transaction for all of it),
        then ack what it applied and nak the rest (redelivered after a pause)."""
        assert self._batch_handler is not None
        incoming = [
            Incoming(m.subject, m.data, (m.headers or {}).get("Nats-Msg-Id", ""),
                     _deliveries(m))
            for m in msgs
        ]  # fmt: skip
        try:
            done = await self._batch_handler(incoming)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("event batch handler failed (%s); redelivered later", exc)
            done = [False] * len(msgs)
        acks = [m.ack_sync(timeout=5.0) for m, ok in zip(msgs, done, strict=True) if ok]
        naks = [m.nak(delay=1.0) for m, ok in zip(msgs, done, strict=True) if not ok]
        await asyncio.gather(*acks, *naks, return_exceptions=True)
        self.applied += len(acks)
        self.failed += len(naks)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered or 1)
    except Exception:  # not a JetStream message (cannot happen on a pull consumer)
        return 1


class EventSubscriber:
    """Every events message as published (no replay, no ack): for board hubs."""

    def __init__(self, nc: Client, bus: BusSettings, handler: Handler) -> None:
        self._nc = nc
        self._subject = events_subject(bus.prefix)
        self._handler = handler
        self._sub: Subscription | None = None
        self.received = 0

    async def start(self) -> None:
        async def cb(msg: Msg) -> None:
            self.received += 1
            msg_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            try:
                await self._handler(msg.subject, msg.data, msg_id)
            except Exception:
                log.exception("event subscriber handler failed")

        self._sub = await self._nc.subscribe(self._subject, cb=cb)
        await self._nc.flush()

    async def close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
