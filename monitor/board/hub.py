"""The board's asyncio shell: one bus subscription feeding one `BoardState`, fanned out to
every connected browser.

`BoardHub.start()` subscribes to the event bus, seeds the state from the database through a
`BoardReader` (calls already active, today's KPIs, unresolved alerts), then folds bus events
in as they come and broadcasts `state.flush()` every `tick_s` as one frame: a JSON array of
that tick's messages, encoded once and shared by every browser (so a tick costs one send per
browser however many calls changed: RELIABILITY.md L3). Each browser has its own bounded
backlog: a browser that falls `max_backlog` messages behind is not slowed down to, nor does it
slow anyone; its backlog is dropped and it gets a fresh snapshot (resync). When the bus
itself dropped events for us (we fell behind), the state is re-seeded from the database and
everyone resyncs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from collections import deque
from datetime import UTC, datetime, time
from typing import TYPE_CHECKING, Any

from monitor.board.source import BoardReader
from monitor.board.state import BoardState
from monitor.events import CallEvent

if TYPE_CHECKING:
    from monitor.runtime.bus import EventBus, Subscription

log = logging.getLogger("callwatch.board")

Message = dict[str, Any]


#: Browsers offered a frame per event-loop turn (see `BoardHub._fan_out`).
FAN_OUT_SLICE = 16
#: What `Client.next` returns when the browser is owed a fresh snapshot.
SNAPSHOT = "snapshot"


def frame_messages(frame: str | bytes) -> list[Message]:
    """The messages of one board websocket frame, oldest first: the framing's reading side
    (board.js does the same), for Python clients such as the tests."""
    doc = json.loads(frame)
    return doc if isinstance(doc, list) else [doc]


class Client:
    """One browser's outgoing frames. A frame is one tick's delta messages as a JSON array,
    encoded once for every browser; frames still waiting when the browser's sender wakes go
    out as one array (a slow reader gets fewer, larger frames). The backlog is bounded in
    messages (`max_backlog`): past it the frames are dropped and the browser is owed a
    snapshot instead."""

    def __init__(self, max_backlog: int) -> None:
        self._frames: deque[tuple[str, int]] = deque()  # (frame, messages in it)
        self._queued = 0  # messages in `_frames`
        self._max = max_backlog
        self._snapshot = False
        self._closed = False
        self._wake = asyncio.Event()
        self.resyncs = 0

    @property
    def backlog(self) -> int:
        """Messages waiting to be sent."""
        return self._queued

    def offer(self, frame: str, count: int) -> None:
        """Queue one tick's frame (`count` messages), or owe a snapshot when it would take the
        backlog past its bound."""
        if self._snapshot:
            return  # the snapshot, taken when it is sent, will hold these messages too
        if self._queued + count > self._max:
            self.resync()
            return
        self._frames.append((frame, count))
        self._queued += count
        self._wake.set()

    def resync(self) -> None:
        """Drop the backlog; the next thing sent is a snapshot."""
        self._frames.clear()
        self._queued = 0
        self._snapshot = True
        self.resyncs += 1
        self._wake.set()

    def close(self) -> None:
        """The browser went away: wake the sender so it notices."""
        self._closed = True
        self._wake.set()

    def take(self) -> str | None:
        """What is due now without waiting: `SNAPSHOT`, every waiting frame as one JSON array,
        or None."""
        self._wake.clear()
        if self._snapshot:
            self._snapshot = False
            return SNAPSHOT
        if not self._frames:
            return None
        if len(self._frames) == 1:
            frame = self._frames[0][0]
        else:  # each is "[...]": one array of all their messages, in order
            frame = "[" + ",".join(f[1:-1] for f, _ in self._frames) + "]"
        self._frames.clear()
        self._queued = 0
        return frame

    async def next(self, timeout_s: float) -> str | None:
        """`take()`, waiting up to `timeout_s` for something to be due (None: nothing, or the
        browser went away)."""
        if not self._frames and not self._snapshot and not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await self._wake.wait()
        return self.take()


class BoardHub:
    def __init__(
        self,
        bus: EventBus | None,
        reader: BoardReader,
        *,
        interval_s: float = 0.3,
        # A card changes at most every `interval_s`; a quarter-second tick batches the
        # floor's changes into 4 frames a second at most, each fanned out once.
        tick_s: float = 0.25,
        max_backlog: int = 2000,
        lines_per_party: int = 3,
        bus_maxsize: int = 10_000,
    ) -> None:
        self._bus = bus
        self._reader = reader
        self._interval_s = interval_s
        self._tick_s = tick_s
        self._max_backlog = max_backlog
        self._lines = lines_per_party
        self._bus_maxsize = bus_maxsize
        self.state = BoardState(interval_s=interval_s, lines_per_party=lines_per_party)
        self.clients: set[Client] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._started: asyncio.Future[None] | None = None

    @property
    def tick_s(self) -> float:
        """How often the state is flushed to the browsers: at most one frame each per tick."""
        return self._tick_s

    # ------------------------------------------------------------------ lifecycle
    async def ensure_started(self) -> None:
        """Start on first use (the app has no startup hook of ours); later callers wait."""
        if self._started is None:
            self._started = asyncio.get_running_loop().create_future()
            try:
                await self._start()
                self._started.set_result(None)
            except BaseException as exc:
                self._started.set_exception(exc)
                self._started = None
                raise
        else:
            await asyncio.shield(self._started)

    async def _start(self) -> None:
        sub = self._bus.subscribe(maxsize=self._bus_maxsize) if self._bus is not None else None
        await self._reseed()
        if sub is not None:
            self._tasks.append(asyncio.create_task(self._consume(sub), name="board-consume"))
        self._tasks.append(asyncio.create_task(self._broadcast(), name="board-broadcast"))
        log.info("board feed started")

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    # ------------------------------------------------------------------ clients
    def join(self) -> Client:
        client = Client(self._max_backlog)
        self.clients.add(client)
        return client

    def leave(self, client: Client) -> None:
        self.clients.discard(client)

    # ------------------------------------------------------------------ loops
    async def _consume(self, sub: Subscription) -> None:
        loop = asyncio.get_running_loop()
        dropped = 0  # a fresh subscription: every drop counts
        try:
            async for event in sub:
                if sub.dropped != dropped:  # we fell behind the bus: start over from the DB
                    dropped = sub.dropped
                    log.warning(
                        "board fell behind the event bus; resynchronising",
                        extra={"dropped": dropped},
                    )
                    await self._reseed()
                    for client in self.clients:
                        client.resync()
                    continue
                try:
                    self.state.apply(event, loop.time())
                except Exception:  # one odd event must not stop the board
                    log.exception("board could not apply %s", type(event).__name__)
        finally:
            sub.close()

    async def _broadcast(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._tick_s)
            msgs = self.state.flush(loop.time())
            if msgs and self.clients:
                # One frame per tick, encoded once: the cost of a tick grows with clients,
                # not with messages x clients (RELIABILITY.md L3).
                frame = json.dumps(msgs, separators=(",", ":"))
                await self._fan_out(frame, len(msgs))

    async def _fan_out(self, frame: str, count: int) -> None:
        """Offer `frame` to every browser, `FAN_OUT_SLICE` of them per event-loop turn: each
        offer wakes that browser's sender, and 200 senders waking in one turn would hold the
        loop (and every call's audio) for the whole fan-out (RELIABILITY.md L3)."""
        clients = list(self.clients)
        for i in range(0, len(clients), FAN_OUT_SLICE):
            if i:
                await asyncio.sleep(0)  # the senders woken so far run; audio is read
            for client in clients[i : i + FAN_OUT_SLICE]:
                client.offer(frame, count)

    async def _reseed(self) -> None:
        """Rebuild the state from the database: active calls with their last lines, today's
        finished calls for the KPIs, unresolved alerts."""
        state = BoardState(interval_s=self._interval_s, lines_per_party=self._lines)
        now = asyncio.get_running_loop().time()
        events, alerts = await asyncio.to_thread(self._seed_events)
        for event in events:
            state.apply(event, now)
        for alert in alerts:
            state.put_alert(alert, announce=False)
        state.seed_today(**await asyncio.to_thread(self._today))
        state.seq = self.state.seq
        self.state = state

    def _seed_events(self) -> tuple[list[CallEvent], list[dict[str, Any]]]:
        return self._reader.active_call_events(self._lines), self._reader.open_alerts()

    def _today(self) -> dict[str, Any]:
        # Totalled in SQL over all of today's (UTC) calls, however many: a seed, the live
        # feed adds on.
        start = datetime.combine(datetime.now(UTC).date(), time(), tzinfo=UTC)
        return dataclasses.asdict(self._reader.day_totals(start))
