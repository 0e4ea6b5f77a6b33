"""The storage writer: a subscriber of the event bus, the only path from the live side to the
database, and never on the audio path.

Every event published on the bus is handed to `accept` in line (`EventBus.attach`), mapped to
rows (`monitor.runtime.storage_rows`, which also says each row class's policy) and queued
without waiting: a call's receive loop never awaits the database, whatever it is doing.
One task writes the queue with group commit (each transaction takes everything waiting, up to
`batch_size`, in a worker thread; an idle system adds no batching delay). One queue, in
publish order, so each call's rows keep their order (its `CallOpened` before its segments).

Under pressure (more than `queue_size` rows waiting):
* rows that may be shed (`Policy.SHED`: readings, trace entries) are dropped on arrival and
  counted per class in `shed` (the health document and metrics show it);
* rows that are kept (`Policy.KEEP`: lifecycle, segments, findings, results, alerts) are
  always queued; producers that can afford to wait (a call's task storing an ASR result or
  making its verdict; never a receive loop) call `await room()` first, which returns once
  the kept backlog is under `queue_size` again: back-pressure on those tasks only. A call's
  receive loop only queues (its open, hang-up and live findings are few and bounded per
  call; its readings and trace entries are what is shed).

Errors: only `StorageUnavailable` (the database is down, locked or restarting) is retried,
with backoff, until it lands (logged once per outage). Any other error means something in
the batch is wrong: the batch is split in halves, recursively, so the good rows are stored
and the bad one is isolated, logged with its traceback and dropped (`records_rejected`).

An outage is visible (issue 17 item 11, RELIABILITY.md S1): `health()` says "degraded" while
a write has waited longer than `degraded_after_s` (a lock held elsewhere makes SQLite wait out
its busy timeout before any error surfaces, so waiting counts, not only failures) or the last
attempt failed; /api/health and the board show it (`monitor.runtime.load`). Audio keeps landing
on disk meanwhile (the recorder does not go through here) and the queued rows are written, in
order and idempotently, once the database answers.

An outage that outlives the process (RELIABILITY.md S2): with a `journal`
(`monitor.runtime.storage_journal`), once a write has waited `degraded_after_s` or failed,
every row the writer holds (the batch in flight, the queue) and every row it takes after is
also appended to the on-disk journal; when the database has taken all of them the journal is
cleared. `close` waits at most `close_timeout_s` for a database that does not answer, makes
sure the journal holds what is left, and returns: the next start imports it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from monitor.events import CallEvent
from monitor.runtime.bus import EventBus
from monitor.runtime.storage_journal import StorageJournal
from monitor.runtime.storage_rows import Policy, Row, policy_of, rows_for
from storage.errors import BatchRejected, StorageUnavailable
from storage.repository import Repository

log = logging.getLogger("callwatch.storage")


class StorageWriter:
    def __init__(
        self,
        repo: Repository,
        *,
        batch_size: int,
        group_commit_s: float,
        queue_size: int,
        bus: EventBus | None = None,
        degraded_after_s: float = 2.0,
        journal: StorageJournal | None = None,
        close_timeout_s: float = 10.0,
    ) -> None:
        self._repo = repo
        #: The on-disk journal (None: an outage's rows are held in memory only).
        self.journal = journal
        self._journaling = False  # every row held is also in the journal
        self._close_timeout_s = close_timeout_s
        self._batch: list[Row] = []  # the batch being written
        self._degraded_after_s = degraded_after_s
        self._writing_since: float | None = None  # monotonic start of the write in progress
        self._failing = False  # the write in progress has failed at least once
        #: The bus this writer stores (a private one when none is given).
        self.bus = bus if bus is not None else EventBus()
        self.bus.attach(self.accept)
        self._batch_size = batch_size
        self._pause = group_commit_s
        self._queue_size = queue_size
        self._queue: deque[Row] = deque()
        self._kept = 0  # KEEP rows waiting (the back-pressure measure)
        self._in_flight = 0  # rows taken by the writer and not yet stored or dropped
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self.batches_written = 0
        self.records_written = 0
        self.records_rejected = 0
        #: Rows shed under pressure, by row class name ("ReadingAdded", "TraceAdded").
        self.shed: Counter[str] = Counter()

    # -- input -----------------------------------------------------------------------------

    def accept(self, event: CallEvent) -> None:
        """Queue the rows of one bus event now (never waits; sheds what may be shed)."""
        self.offer(rows_for(event))

    def offer(self, rows: Sequence[Row]) -> None:
        queued = []
        for row in rows:
            keep = policy_of(row) is Policy.KEEP
            if not keep and len(self._queue) >= self._queue_size:
                self.shed[type(row).__name__] += 1
                continue
            self._queue.append(row)
            queued.append(row)
            self._kept += keep
        if self._journaling:
            self._journal(queued)
        elif self._waited_too_long():
            self._start_journal()
        if self._kept >= self._queue_size:
            self._room.clear()
        if self._queue:
            self._idle.clear()
            self._wakeup.set()

    def _waited_too_long(self) -> bool:
        started = self._writing_since
        return (
            self.journal is not None
            and started is not None
            and (self._failing or time.monotonic() - started >= self._degraded_after_s)
        )

    def _start_journal(self) -> None:
        """The database is not answering: journal everything held from now on."""
        if self.journal is None or self._journaling:
            return
        self._journaling = True
        log.warning("storage journal started: rows also go to %s until the database is back",
                    self.journal.directory)  # fmt: skip
        self._journal([*self._batch, *self._queue])

    def _journal(self, rows: Sequence[Row]) -> None:
        assert self.journal is not None
        try:
            self.journal.append(rows)
        except OSError as exc:  # the disk too: the rows are still held in memory
            log.error("storage journal write failed: %s", exc.strerror or type(exc).__name__)

    def _settled(self) -> None:
        """Everything held has been written: what the journal holds is in the database."""
        if self._journaling and self.journal is not None:
            self.journal.clear()
            self._journaling = False
            log.warning("storage journal cleared: the database has every row")

    async def room(self) -> None:
        """Wait while the kept backlog is full (callers off the audio path only)."""
        await self._room.wait()

    async def put(self, row: Row) -> None:
        """Queue a row made outside the bus (crash recovery, tests), waiting for room."""
        await self.room()
        self.offer([row])

    async def put_many(self, rows: Sequence[Row]) -> None:
        await self.room()
        self.offer(rows)

    @property
    def backlog(self) -> int:
        return len(self._queue) + self._in_flight

    @property
    def shed_total(self) -> int:
        return sum(self.shed.values())

    def health(self, now: float | None = None) -> dict[str, Any]:
        """`status` "ok" | "degraded" (a write waiting over `degraded_after_s`, or failing),
        `since` (UTC, when the write now waiting began), `waiting_s`, `failing`, and the
        counters: `backlog`, `written`, `rejected`, `shed` per row class, `shed_total`; with
        an on-disk journal, `journal`: `active`, `bytes`, `max_bytes`, `shed`, `overflow`.
        Counters only: no error text, no data."""
        now = time.monotonic() if now is None else now
        started = self._writing_since
        waiting = 0.0 if started is None else max(0.0, now - started)
        degraded = started is not None and (self._failing or waiting >= self._degraded_after_s)
        since = datetime.now(UTC) - timedelta(seconds=waiting) if degraded else None
        doc: dict[str, Any] = {
            "status": "degraded" if degraded else "ok",
            "since": since.isoformat() if since else None,
            "waiting_s": round(waiting, 1) if degraded else 0.0,
            "failing": self._failing,
            "queued": self.backlog,
            "backlog": self.backlog,
            "written": self.records_written,
            "rejected": self.records_rejected,
            "shed": dict(self.shed),
            "shed_total": self.shed_total,
        }
        if self.journal is not None:  # the on-disk journal (S2): a writer without one has none
            doc["journal"] = {
                "active": self._journaling,
                "bytes": self.journal.size,
                "max_bytes": self.journal.max_bytes,
                "shed": dict(self.journal.shed),
                "overflow": self.journal.overflow,
            }
        return doc

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="storage-writer")

    async def drain(self) -> None:
        """Wait until everything queued so far is stored (or dropped as bad)."""
        while self._queue or self._in_flight:
            await self._idle.wait()

    async def close(self) -> None:
        """Write what is held; a database that does not answer within `close_timeout_s`
        leaves it in the journal (or, without one, lost: say how much)."""
        try:
            await asyncio.wait_for(self.drain(), self._close_timeout_s)
        except TimeoutError:
            self._start_journal()
            log.error("storage writer stopped with the database unavailable: %d rows %s",
                      self.backlog, "left in the journal for the next start"
                      if self._journaling else "lost")  # fmt: skip
        if self.journal is not None:
            self.journal.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        # Group commit: write whatever is waiting as soon as the previous transaction is done.
        # An idle system commits each row at once (no added latency); under load rows pile
        # up during a commit and the next transaction takes them all, up to batch_size.
        while True:
            if not self._queue:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
            self._in_flight = len(batch)
            self._kept -= sum(policy_of(r) is Policy.KEEP for r in batch)
            if self._kept < self._queue_size:
                self._room.set()
            self._batch = batch
            try:
                await self._write(batch)
            finally:
                self._in_flight = 0
                self._batch = []
            if not self._queue:
                self._settled()
                self._idle.set()
            if self._pause and len(self._queue) < self._batch_size:
                # A short pause lets a burst (a call's open, a finished batch) share a commit.
                await asyncio.sleep(self._pause)

    # -- writing ---------------------------------------------------------------------------

    async def _write(self, batch: list[Row]) -> None:
        """Store `batch`; on an error other than unavailability, isolate the bad row."""
        try:
            await self._write_until_available(batch)
        except Exception as exc:
            if len(batch) > 1:
                half = len(batch) // 2
                await self._write(batch[:half])
                await self._write(batch[half:])
                return
            self.records_rejected += 1
            if isinstance(exc, BatchRejected):  # the database said why: no trace needed
                log.error("storage rejected a record, dropped: %s: %s",
                          type(batch[0]).__name__, str(exc).splitlines()[0][:200])  # fmt: skip
            else:  # a bug, here or in the repository: say where
                log.error("storing a record failed, dropped: %s", type(batch[0]).__name__,
                          exc_info=exc)  # fmt: skip

    async def _write_until_available(self, batch: list[Row]) -> None:
        self._writing_since, self._failing = time.monotonic(), False
        try:
            await self._write_with_retries(batch)
        finally:
            self._writing_since, self._failing = None, False

    async def _write_with_retries(self, batch: list[Row]) -> None:
        delay, failing = 0.2, False
        while True:
            try:
                await asyncio.to_thread(self._repo.apply, batch)
            except StorageUnavailable as exc:  # down, locked, restarting: the same batch later
                if not failing:
                    log.error("storage unavailable, retrying until it is back: %s",
                              str(exc).splitlines()[0][:200])  # fmt: skip
                    failing = self._failing = True
                    self._start_journal()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if failing:
                log.warning("storage write recovered")
            self.batches_written += 1
            self.records_written += len(batch)
            return
