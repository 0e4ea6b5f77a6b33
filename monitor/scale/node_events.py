"""A node's live events on NATS (scale-out, NATS mode): out to the stream, into the shared
database once, and onto every node's board.

Three parts, wired by the composition root (`monitor.app`) when `bus.url` is set:

* `EventBridge` - attached to the node's in-process bus (`EventBus.attach`): every typed event
  of this node's calls (and the alerts raised on them) is encoded with the versioned codec
  (`monitor.events.codec`) and handed to the `EventPublisher` on `<prefix>.events.<call id>`,
  with `Nats-Msg-Id` = `<call id>:<seq>` (the stream drops a re-sent duplicate). An event
  is essential when any row it makes is kept under pressure (`storage_rows.policy_of`), so
  the publisher's buffer bound sheds readings and trace detail first, as the local storage
  writer would. It also remembers which calls are this node's, so the board feed does not
  apply them a second time when they come back from NATS.
* `StorageConsumer` - the one shared durable consumer (`storage`): whichever node fetches a
  message stores it, so each event is applied by one node (at least once: redelivered after a
  crash or a lost ack). Apply is idempotent by the rows' keys (trace and findings by
  (call id, seq), readings by (call id, party, seq), segments by their span, a call by its
  id, an alert by (call id, rule) and its id; closing and scoring write the same values
  again), so a redelivered event never stores a row twice. A fetch is one transaction; the
  acks go out after it committed. Events of one call may be fetched by different nodes: an
  event whose call is not stored yet (its `CallStarted` is in another node's transaction) is
  refused, nak'd and comes back a second later, up to `EARLY_RETRIES` times (an event refused
  while its call is stored is refused for good: dropped at once, counted and logged).
* `FloorFeed` - every node's events as they are published (`EventSubscriber`), decoded and
  published on the node's *floor bus*, the bus its board hub listens to; this node's own
  events reach the floor bus directly, not through NATS. Node loss reaches the board through
  `tell_lost`: each of the lost node's calls becomes a `CallFinalised` with reason `node_lost`
  on the floor bus, which drops the call at once, once per call. It is called by this node's
  heartbeat (the calls it closed, and every node_lost call in the database it has not told of
  yet: monitor.scale.heartbeat) and by the closer's notice on `<prefix>.nodes.lost`, the fast
  path to the other nodes; a notice lost on the way costs a heartbeat period, not the call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter, OrderedDict
from datetime import UTC, datetime

import sqlalchemy as sa
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from config.settings import BusSettings
from monitor.board.state import NODE_LOST
from monitor.events import CallEvent, CallFinalised
from monitor.events.codec import EventDecodeError, from_json, to_json
from monitor.runtime.bus import EventBus
from monitor.runtime.storage_rows import Policy, Row, policy_of, rows_for
from monitor.scale.transport import (
    DurableConsumer,
    EventPublisher,
    EventSubscriber,
    Incoming,
    stream_name,
)
from storage.errors import BatchRejected, StorageUnavailable
from storage.repository import Repository

log = logging.getLogger("callwatch.bus.events")

#: The storage consumer every node shares (one durable: each event is stored by one node).
STORAGE_DURABLE = "storage"
#: Redeliveries of an event refused because its call is not stored yet, before it is dropped.
EARLY_RETRIES = 20
#: How long a finished call of this node is still known as ours (late alerts, verdicts).
OWN_CALL_MEMORY_S = 3600.0
OWN_CALL_MAX = 100_000
#: Lost calls a board remembers having dropped.
TOLD_MAX = 50_000


def lost_subject(prefix: str) -> str:
    return f"{prefix}.nodes.lost"


def msg_id(event: CallEvent) -> str:
    return f"{event.call_id}:{event.seq}"


def essential(event: CallEvent) -> bool:
    """Kept under pressure when any of its rows is (the storage writer's own policy)."""
    return any(policy_of(row) is Policy.KEEP for row in rows_for(event))


class EventBridge:
    """The node's bus -> NATS. `accept` is attached to the bus: in line, never blocks."""

    def __init__(self, publisher: EventPublisher, node: str) -> None:
        self.publisher = publisher
        self.node = node
        #: Events the publisher's bound made it drop, per call (also logged, per call).
        self.dropped_by_call: Counter[str] = Counter()
        # call id -> monotonic time of its last event: bounded, oldest forgotten first.
        self._own: OrderedDict[str, float] = OrderedDict()

    def accept(self, event: CallEvent) -> None:
        now = time.monotonic()
        self._own[event.call_id] = now
        self._own.move_to_end(event.call_id)
        while self._own and (
            len(self._own) > OWN_CALL_MAX
            or now - next(iter(self._own.values())) > OWN_CALL_MEMORY_S
        ):
            self._own.popitem(last=False)
        try:
            payload = to_json(event).encode()
        except Exception:  # a bug in an event's fields: say which, never stop the call
            log.exception("event %s of a call could not be encoded", type(event).__name__)
            return
        self.publisher.publish(event.call_id, payload, msg_id(event), essential=essential(event))

    def is_own(self, call_id: str) -> bool:
        return call_id in self._own

    def dropped(self, subject: str, msg_id: str, essential: bool) -> None:
        """The publisher's `on_drop`: which call lost what, traced in the log with its id
        (first drop of a call, every essential one, then every hundredth)."""
        call_id = msg_id.rpartition(":")[0] or subject.rpartition(".")[2]
        self.dropped_by_call[call_id] += 1
        n = self.dropped_by_call[call_id]
        if n == 1 or essential or n % 100 == 0:
            log.log(
                logging.ERROR if essential else logging.WARNING,
                "event buffer bound exceeded: %d event(s) of call %s dropped so far (this one "
                "%s, seq %s)",
                n,
                call_id,
                "essential" if essential else "sheddable",
                msg_id.rpartition(":")[2],
                extra={"call_id": call_id},
            )


class StorageConsumer:
    """The shared durable consumer writing events to the database (see the module doc)."""

    def __init__(self, nc: Client, bus: BusSettings, repo: Repository, *, batch: int = 200):
        self._nc = nc
        self._prefix = bus.prefix
        self._repo = repo
        self.consumer = DurableConsumer(
            nc, bus, STORAGE_DURABLE, batch_handler=self.apply, batch=batch
        )
        self.events_applied = 0
        self.rejected = 0  # events dropped as unstorable (logged)
        self.undecodable = 0

    async def start(self) -> None:
        await self.consumer.start()

    async def close(self) -> None:
        await self.consumer.close()

    async def caught_up(self, timeout_s: float) -> bool:
        """Wait until every event in the stream now is stored (by any node), up to
        `timeout_s`: at start, before recovering this node's calls from the database (their
        last events may still be in the stream), and at a clean stop, after this node's
        buffer was sent. False when it timed out."""
        js = self._nc.jetstream()
        stream = stream_name(self._prefix)
        target = (await js.stream_info(stream)).state.last_seq
        deadline = time.monotonic() + timeout_s
        while True:
            info = await js.consumer_info(stream, STORAGE_DURABLE)
            if info.ack_floor is not None and (info.ack_floor.stream_seq or 0) >= target:
                return True
            if time.monotonic() > deadline:
                log.warning("the event stream was not stored within %.0f s", timeout_s)
                return False
            await asyncio.sleep(0.1)

    async def apply(self, batch: list[Incoming]) -> list[bool]:
        """Store a fetched batch; per message, True = done (ack), False = again later (nak)."""
        done = [True] * len(batch)
        parts: list[tuple[int, list[Row]]] = []
        for i, msg in enumerate(batch):
            try:
                parts.append((i, rows_for(from_json(msg.payload))))
            except (EventDecodeError, TypeError) as exc:
                # Never storable, however often redelivered: counted, logged, acked.
                self.undecodable += 1
                log.error("undecodable event %s dropped: %s", msg.msg_id, str(exc)[:200])
        rows = [row for _, part in parts for row in part]
        try:
            await asyncio.to_thread(self._repo.apply, rows)
        except StorageUnavailable as exc:
            log.warning("storage unavailable; %d events redelivered later: %s", len(batch), exc)
            return [False] * len(batch)
        except BatchRejected:
            # Find the refused one(s): each event on its own (rare: a call not stored yet).
            for i, part in parts:
                done[i] = await self._apply_one(batch[i], part)
            self.events_applied += sum(done)
            return done
        self.events_applied += len(parts)
        return done

    async def _apply_one(self, msg: Incoming, rows: list[Row], *, again: bool = True) -> bool:
        try:
            await asyncio.to_thread(self._repo.apply, rows)
        except StorageUnavailable:
            return False
        except BatchRejected as exc:
            call_id = msg.msg_id.rpartition(":")[0]
            stored = await asyncio.to_thread(self._call_stored, call_id)
            if msg.deliveries < EARLY_RETRIES and not stored:
                return False  # its call's CallStarted is still on its way (another node)
            if stored and again:
                # Its call may have been committed (by another node) between the refusal
                # and the look: once more now, before refusing it for good.
                return await self._apply_one(msg, rows, again=False)
            self.rejected += 1
            log.error("event %s refused by storage, dropped: %s", msg.msg_id,
                      str(exc).splitlines()[0][:200])  # fmt: skip
        return True

    def _call_stored(self, call_id: str) -> bool:
        with self._repo.engine.connect() as conn:
            q = sa.text("SELECT 1 FROM calls WHERE id = :c")
            return conn.execute(q, {"c": call_id}).first() is not None


class FloorFeed:
    """Other nodes' events (and node losses) -> this node's floor bus (its board)."""

    def __init__(self, nc: Client, bus: BusSettings, floor: EventBus, bridge: EventBridge) -> None:
        self._nc = nc
        self._prefix = bus.prefix
        self._floor = floor
        self._bridge = bridge
        self._events = EventSubscriber(nc, bus, self._on_event)
        self._lost_sub: Subscription | None = None
        self.applied = 0
        #: Lost calls already put on the floor bus (bounded, oldest forgotten first).
        self._told: OrderedDict[str, None] = OrderedDict()

    async def start(self) -> None:
        await self._events.start()
        self._lost_sub = await self._nc.subscribe(lost_subject(self._prefix), cb=self._on_lost)
        await self._nc.flush()

    async def close(self) -> None:
        await self._events.close()
        if self._lost_sub is not None:
            await self._lost_sub.unsubscribe()
            self._lost_sub = None

    async def _on_event(self, subject: str, payload: bytes, msg_id: str) -> None:
        if not self._floor.subscribers:
            return  # no board open on this node: not worth decoding every node's events
        event = from_json(payload)
        if self._bridge.is_own(event.call_id):
            return  # already on the floor bus, straight from this node's bus
        self.applied += 1
        self._floor.publish(event)

    async def _on_lost(self, msg: Msg) -> None:
        try:
            doc = json.loads(msg.data)
            calls = [str(c) for c in doc["calls"]]
        except (ValueError, KeyError, TypeError):
            log.warning("malformed node-lost message ignored")
            return
        self.tell_lost(calls)

    def tell_lost(self, call_ids: list[str]) -> list[str]:
        """This node's board drops these calls (node lost); each call once. The ids new."""
        new = [c for c in dict.fromkeys(call_ids) if c not in self._told]
        for event in lost_events(new):
            self._floor.publish(event)
            self._told[event.call_id] = None
        while len(self._told) > TOLD_MAX:
            self._told.popitem(last=False)
        return new

    async def announce_lost(self, node: str, call_ids: list[str]) -> None:
        """Tell the other nodes' boards now (best effort: each node's heartbeat finds these
        calls in the database within a period anyway)."""
        body = json.dumps({"node": node, "calls": call_ids}).encode()
        await self._nc.publish(lost_subject(self._prefix), body)
        await self._nc.flush(timeout=2)


def lost_events(call_ids: list[str]) -> list[CallFinalised]:
    """For the boards only (the database was closed by the sweeper's guarded update): each
    call ends interrupted / node_lost; the seq is irrelevant to a board."""
    now = datetime.now(UTC)
    return [
        CallFinalised(call_id=c, seq=-1, media_ms=None, at=now, ended_at=now,
                      status="interrupted", end_reason=NODE_LOST, duration_ms=0,
                      recording_frames=0)
        for c in call_ids
    ]  # fmt: skip
