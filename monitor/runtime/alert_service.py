"""The alert service: the asyncio shell of the alert engine (`monitor.alerts`).

It listens on the event bus (every event of every live call), feeds the events and, every
`[alerts] tick_s`, each running call's media position to the sans-I/O engine, and publishes
the engine's alerts as `AlertRaised` events on the bus, numbered by the call's own sequencer
(found in the `CallRegistry`); storage (which also writes the alert's trace entry and its
webhook outbox rows in the same transaction) and the live board hear them there. An
acknowledge / resolve changes the stored alert at once and publishes `AlertChanged`.

Ids: the service numbers alerts from blocks reserved in the database (`reserve_ids`), so the
bus and the board know an alert's id before it is committed, and several nodes on one
database never give the same id. An event about a call this node does not know (an alert of
another node's call acknowledged here) is numbered from the database's foreign range with
`foreign_numbers` (scale-out), never "one past the highest stored": the owner may have sent
events that are not stored yet.

Restarts: at start the open and acknowledged alerts are loaded (`open_alerts`) and their
(call, rule) keys seed the engine's de-duplication; the database's unique (call_id, rule)
is the backstop. Learned baselines are computed from stored history at start and every
`refresh_s`, in a worker thread.

Clocks are injected (`clock` for wall-clock UTC, `monotonic` for tick spacing) so tests can
drive the service deterministically with `settle()` and `tick()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from config.settings import AlertSettings, WebhookSettings
from monitor.alerts import Alert, AlertEngine, Baselines, MediaTick
from monitor.events import AlertChanged, AlertRaised, CallEvent, CallSequencer
from monitor.events.documents import jsonable
from monitor.runtime.bus import EventBus, Subscription
from monitor.runtime.logs import fields
from monitor.runtime.registry import CallRegistry
from monitor.runtime.storage_sink import StorageWriter
from storage.models import AlertInfo
from storage.repository import Repository

log = logging.getLogger("callwatch.alerts")

_SEVERITY_LEVEL = {"info": 0, "warning": 1, "critical": 2}
#: Alert ids reserved at a time (a gap of up to this many after a restart is harmless).
ID_BLOCK = 100


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AlertService:
    def __init__(
        self,
        *,
        repo: Repository,
        storage: StorageWriter,
        bus: EventBus,
        settings: AlertSettings | None = None,
        webhooks: WebhookSettings | None = None,
        registry: CallRegistry | None = None,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        auto_tick: bool = True,
        on_outbox: Callable[[], None] | None = None,
        settle_s: float = 0.0,
        foreign_numbers: bool = False,
    ) -> None:
        self._repo = repo
        # Scale-out: an alert reaches the database through the NATS stream and whichever
        # node's storage consumer takes it, so one raised a moment ago (here or on another
        # node) may not be stored yet; a change waits this long for it before "not found".
        self._settle_s = settle_s
        self._foreign_numbers = foreign_numbers
        self._storage = storage
        self._bus = bus
        self.settings = settings or AlertSettings()
        self._webhooks = webhooks or WebhookSettings()
        #: Live calls (their media positions) and every call's event sequencer.
        self.registry = (
            registry if registry is not None else CallRegistry(resume_seq=repo.next_trace_seq)
        )
        self._clock = clock
        self._monotonic = monotonic
        self._auto_tick = auto_tick
        self._on_outbox = on_outbox
        self.engine = AlertEngine(self.settings)
        # Alert ids come from a block reserved in the database (collision-free when several
        # nodes share it); `_next_id == _id_end` means: reserve the next block.
        self._next_id = 0
        self._id_end = 0
        self._sub: Subscription | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._busy = False
        self.raised = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> list[AlertInfo]:
        """Load state, subscribe, start the tasks. Returns the alerts still open."""
        pending = await self.open_alerts()
        self.engine = AlertEngine(self.settings, fired=[(a.call_id, a.rule) for a in pending])
        if self.settings.learned:
            await self.refresh_baselines()
        self._sub = self._bus.subscribe(maxsize=100_000)
        self._tasks.append(asyncio.create_task(self._consume(), name="alerts-consume"))
        if self._auto_tick:
            self._tasks.append(asyncio.create_task(self._ticker(), name="alerts-tick"))
        if self.settings.learned:
            self._tasks.append(asyncio.create_task(self._refresher(), name="alerts-baselines"))
        log.info(
            "alerts started",
            extra=fields(open=len(pending), baselines=len(self.engine.baselines)),
        )
        return pending

    async def close(self) -> None:
        if self._sub is not None:
            await self.settle()
            self._sub.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def open_alerts(self) -> list[AlertInfo]:
        """Alerts not resolved yet (open or acknowledged), newest first."""
        out: list[AlertInfo] = []
        for state in ("open", "acknowledged"):
            offset = 0
            while True:
                page = await asyncio.to_thread(
                    self._repo.list_alerts, state=state, limit=1000, offset=offset
                )
                out.extend(page)
                if len(page) < 1000:
                    break
                offset += 1000
        return sorted(out, key=lambda a: (a.raised_at, a.id), reverse=True)

    async def refresh_baselines(self) -> Baselines:
        """Recompute the learned duration baselines from stored calls (in a thread)."""
        since = self._clock() - timedelta(days=self.settings.history_days)
        history = await asyncio.to_thread(
            self._repo.duration_history, since, self.settings.history_limit
        )
        baselines = await asyncio.to_thread(
            Baselines.from_history, history, self.settings.learned_min_samples
        )
        self.engine.baselines = baselines
        return baselines

    # -- inputs ------------------------------------------------------------------------------

    async def settle(self) -> None:
        """Wait until every event published so far has been handled."""
        # A yielding poll, not an Event: the consumer task runs on this loop and clears the
        # queue within a few iterations; this is for tests and shutdown only.
        while self._sub is not None and (len(self._sub) or self._busy):  # noqa: ASYNC110
            await asyncio.sleep(0)

    async def tick(self, positions: Mapping[str, int] | None = None) -> list[AlertInfo]:
        """Check running calls at their media positions (default: the live calls' own)."""
        if positions is None:
            positions = {cid: call.session.duration_ms for cid, call in self.registry.items()}
        wall = self._monotonic()
        alerts: list[Alert] = []
        for call_id, media_ms in positions.items():
            alerts.extend(self.engine.tick(MediaTick(call_id, media_ms, wall)))
        return await self._raise(alerts)

    async def _consume(self) -> None:
        assert self._sub is not None
        dropped = 0
        while True:
            event = await self._sub.get()
            if self._sub.dropped > dropped:
                # Only if the rules stall for 100k records: say so, rules may have missed some.
                log.warning("alert engine fell behind, %d events skipped", self._sub.dropped)
                dropped = self._sub.dropped
            self._busy = True
            try:
                await self._handle(event)
            except Exception:  # one bad event must not stop alerting for every call
                log.exception("alert rule failed on %s", type(event).__name__)
            finally:
                self._busy = False

    async def _handle(self, event: CallEvent) -> None:
        if isinstance(event, AlertRaised | AlertChanged):
            return
        await self._raise(self.engine.feed(event))

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(self.settings.tick_s)
            try:
                await self.tick()
            except Exception:
                log.exception("alert tick failed")

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self.settings.refresh_s)
            try:
                await self.refresh_baselines()
            except Exception as exc:  # database away: keep the old baselines
                log.warning("baseline refresh failed: %s", exc)

    # -- outputs -----------------------------------------------------------------------------

    def _targets(self, severity: str, *, change: bool = False) -> tuple[str, ...]:
        level = _SEVERITY_LEVEL.get(severity, 0)
        return tuple(
            t.name
            for t in self._webhooks.targets
            if level >= _SEVERITY_LEVEL[t.min_severity] and (t.changes or not change)
        )

    async def _raise(self, alerts: list[Alert]) -> list[AlertInfo]:
        out = []
        for alert in alerts:
            alert_id = await self._new_id()
            seq = await self._sequencer(alert.call_id)
            live = self.registry.get(alert.call_id)
            # On a running call the alert sits at the call's media time now (as its timeline
            # entry did before); on a finished one, at the end of what it is about.
            media_ms = live.session.duration_ms if live is not None else alert.media_end_ms
            event = seq.make(
                AlertRaised,
                media_ms=media_ms,
                at=self._clock(),
                alert_id=alert_id,
                rule=alert.rule,
                kind=alert.kind,
                severity=alert.severity,
                message=alert.message,
                media_start_ms=alert.media_start_ms,
                media_end_ms=alert.media_end_ms,
                party=alert.party,
                evidence=jsonable(alert.evidence),
                agent_id=alert.agent_id,
                queue=alert.queue,
                webhooks=self._targets(alert.severity),
            )
            self._bus.publish(event)
            self.raised += 1
            log.info(
                "alert raised: %s",
                alert.message,
                extra=fields(call_id=alert.call_id, alert_id=alert_id, rule=alert.rule),
            )
            out.append(_info(event))
        if alerts and self._webhooks.targets:
            self._notify_outbox()
        return out

    async def _new_id(self) -> int:
        if self._next_id >= self._id_end:
            self._next_id = await asyncio.to_thread(self._repo.reserve_ids, "alerts", ID_BLOCK)
            self._id_end = self._next_id + ID_BLOCK
        alert_id, self._next_id = self._next_id, self._next_id + 1
        return alert_id

    async def _sequencer(self, call_id: str) -> CallSequencer:
        """The call's own sequencer; for a call no longer known here, its stored events are
        written first, so numbering resumes after the last of them. With `foreign_numbers`
        (scale-out) a call not known here may be another node's, live or with events still
        in the stream: its event gets a number no owner gives (`Repository.foreign_seq`)."""
        known = self.registry.known_sequencer(call_id)
        if known is not None:
            return known
        if self._foreign_numbers:
            return CallSequencer(call_id, start=await asyncio.to_thread(self._repo.foreign_seq))
        await self._storage.drain()
        return await self.registry.sequencer(call_id)

    def _notify_outbox(self) -> None:
        if self._on_outbox is None:
            return
        notify = self._on_outbox

        async def after_commit() -> None:
            await self._storage.drain()
            notify()

        task = asyncio.get_running_loop().create_task(after_commit())
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    # -- supervisors -------------------------------------------------------------------------

    async def acknowledge(self, alert_id: int, user: str) -> AlertInfo:
        """open -> acknowledged. Raises `storage.errors.AlertNotFound` or
        `InvalidAlertTransition`; acknowledging twice is a no-op."""
        return await self._change(alert_id, "acknowledged", user)

    async def resolve(self, alert_id: int, user: str) -> AlertInfo:
        """open or acknowledged -> resolved (same errors as `acknowledge`)."""
        return await self._change(alert_id, "resolved", user)

    async def _change(self, alert_id: int, state: str, user: str) -> AlertInfo:
        # An alert raised a moment ago may still wait in the writer's queue: write it first.
        await self._storage.drain()
        at = self._clock()
        before = await asyncio.to_thread(self._repo.get_alert, alert_id)
        deadline = time.monotonic() + self._settle_s  # a real wait, whatever the test clock
        while before is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            before = await asyncio.to_thread(self._repo.get_alert, alert_id)
        targets = self._targets(before.severity, change=True) if before else ()
        alert = await asyncio.to_thread(
            self._repo.set_alert_state,
            alert_id,
            state,
            by=user,
            at=at,
            call_id=before.call_id if before else "",
            webhooks=targets,
        )
        if before is not None and before.state != alert.state:
            seq = await self._sequencer(alert.call_id)
            self._bus.publish(
                seq.make(AlertChanged, media_ms=None, at=at, alert_id=alert_id, state=state,
                         by=user, webhooks=targets)
            )  # fmt: skip
            if targets:
                self._notify_outbox()
        return alert


def _info(rec: AlertRaised) -> AlertInfo:
    return AlertInfo(
        id=rec.alert_id,
        call_id=rec.call_id,
        rule=rec.rule,
        kind=rec.kind,
        severity=rec.severity,
        state="open",
        raised_at=rec.at,
        media_start_ms=rec.media_start_ms,
        media_end_ms=rec.media_end_ms,
        party=rec.party,
        message=rec.message,
        evidence=rec.evidence,
        acknowledged_by=None,
        acknowledged_at=None,
        resolved_by=None,
        resolved_at=None,
        agent_id=rec.agent_id,
        queue=rec.queue,
    )
