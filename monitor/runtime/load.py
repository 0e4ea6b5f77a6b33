"""Overload: noticing it, telling the operator, and degrading live work in a stated order.

When the box cannot keep up, live work gives way in this order (cheapest loss first):

1. **DNSMOS** — sampling is paused (`DnsmosService.paused`): windows offered meanwhile are
   skipped; each call's end-of-call windows are still scored, so every call keeps a clarity
   figure. Its CPU goes to ASR.
2. **Partial metrics** — not automatic yet: the per-party level/SNR/clipping readings and the
   conversation measures are cheap next to ASR and keep running.
3. **ASR last, never dropped** — an utterance ASR cannot take live is *deferred*: its audio
   is released, the call keeps its span and transcribes it later from the recording
   (`monitor.runtime.catchup`); the segment is stored `late`, its trace entry says so, and
   the call's verdict waits for it.

`LoadWatch` is the sans-I/O state machine (normal <-> overloaded, with hysteresis);
`LoadMonitor` is its asyncio shell: every `TICK_S` it measures the ASR lag of the live calls
(the oldest utterance still waiting for a live transcript) and whether ASR deferred work,
logs each transition once (structured), applies the degradation and tells the gateway, which
may refuse new calls with 503 (`[load] refuse_when_overloaded`). `health()` is the
/api/health document (state, ASR, DNSMOS CPU, memory of the server and its ASR workers).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from config.settings import LoadSettings
from monitor.runtime.latency import LoopLagProbe
from monitor.runtime.logs import fields

log = logging.getLogger("callwatch.load")
TICK_S = 0.5
#: What is degraded while overloaded, in order (see the module docstring).
DEGRADED_WHEN_OVERLOADED = ("dnsmos",)
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class LoadChanged:
    """The server became overloaded, or recovered."""

    overloaded: bool
    lag_s: float  # the oldest live utterance's wait for ASR
    deferred: int  # utterances ASR deferred since the previous observation
    reason: str


class LoadWatch:
    """Normal until the ASR lag reaches `overload_lag_s`, ASR defers work or says it is behind;
    normal again once the lag stayed under half of that, with nothing deferred and ASR not
    behind, for `recover_s`."""

    def __init__(self, settings: LoadSettings) -> None:
        self._s = settings
        self.overloaded = False
        self.since: float | None = None  # monotonic time of the last transition
        self._calm_since: float | None = None
        self.lag_s = 0.0

    def observe(
        self, now: float, lag_s: float, deferred: int, *, busy: bool = False
    ) -> LoadChanged | None:
        """`lag_s`: the oldest live utterance's wait; `deferred`: utterances taken off the live
        path since the last call; `busy`: the ASR service says it is behind."""
        self.lag_s = lag_s
        hot = lag_s >= self._s.overload_lag_s or deferred > 0
        if not self.overloaded:
            if not hot and not busy:
                return None
            self.overloaded, self.since, self._calm_since = True, now, None
            reason = "asr_deferred" if deferred > 0 else "asr_lag" if hot else "asr_backlog"
            return LoadChanged(True, lag_s, deferred, reason)
        if deferred > 0 or busy or lag_s >= self._s.overload_lag_s / 2:
            self._calm_since = None
            return None
        if self._calm_since is None:
            self._calm_since = now
        if now - self._calm_since < self._s.recover_s:
            return None
        self.overloaded, self.since, self._calm_since = False, now, None
        return LoadChanged(False, lag_s, 0, "recovered")


class _Call(Protocol):
    @property
    def oldest_pending_at(self) -> float | None: ...
    @property
    def asr_outstanding(self) -> int: ...


def asr_lag_s(calls: Iterable[_Call], now: float) -> float:
    """How long the oldest utterance still waiting for a live transcript has waited."""
    oldest = [t for c in calls if (t := c.oldest_pending_at) is not None]
    return max(0.0, now - min(oldest)) if oldest else 0.0


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident memory of a process (Linux /proc), None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class LoadMonitor:
    """The asyncio shell: measure, transition, degrade, report."""

    def __init__(self, settings: LoadSettings, *, gateway: Any, asr: Any, dnsmos: Any = None,
                 pool: Any = None, dnsmos_sample_every_s: float = 0.0,
                 storage: Any = None) -> None:  # fmt: skip
        self.watch = LoadWatch(settings)
        self._storage = storage  # the StorageWriter: its outage shows as "degraded"
        self._storage_degraded = False
        self._s = settings
        self._gateway, self._asr, self._dnsmos, self._pool = gateway, asr, dnsmos, pool
        self._every_s = dnsmos_sample_every_s
        self._deferred_seen = self._asr_deferred()
        self._since_wall: datetime | None = None
        self._reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = time.monotonic()
        self.transitions = 0
        #: The event loop's lag (/api/health `loop`), measured from start() on.
        self.loop_lag = LoopLagProbe()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="load-monitor")
        self.loop_lag.start()

    async def close(self) -> None:
        await self.loop_lag.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _asr_deferred(self) -> int:
        # Utterances taken off the live path. A service without a catch-up lane counts them as
        # `shed` (queue full): the call transcribes them later from the recording all the same.
        deferred = getattr(self._asr, "deferred", None)
        return int(self._asr.shed if deferred is None else deferred)

    def _storage_health(self) -> dict[str, Any] | None:
        health = getattr(self._storage, "health", None)
        return None if health is None else dict(health())

    def _watch_storage(self) -> None:
        # Said once per outage in the log, as the board and /api/health say it meanwhile.
        doc = self._storage_health()
        degraded = doc is not None and doc["status"] == "degraded"
        if degraded != self._storage_degraded:
            self._storage_degraded = degraded
            log.log(
                logging.ERROR if degraded else logging.INFO,
                "storage degraded: database writes waiting (calls go on; records queued)"
                if degraded else "storage recovered",
                extra=fields(event="storage_changed", degraded=degraded,
                             queued=(doc or {}).get("queued")),
            )  # fmt: skip

    def step(self, now: float) -> LoadChanged | None:
        """One observation (the loop calls this every TICK_S; tests call it directly)."""
        self._watch_storage()
        deferred = self._asr_deferred()
        new, self._deferred_seen = deferred - self._deferred_seen, deferred
        # A service with a catch-up lane says itself when live work is past its budget or
        # late work waits.
        busy = bool(getattr(self._asr, "overloaded", False))
        lag = asr_lag_s(self._gateway.calls.values(), now)
        change = self.watch.observe(now, lag, new, busy=busy)
        if change is None:
            return None
        self.transitions += 1
        self._since_wall, self._reason = datetime.now(UTC), change.reason
        if self._dnsmos is not None:
            self._dnsmos.paused = change.overloaded
        self._gateway.overloaded = change.overloaded
        log.log(
            logging.WARNING if change.overloaded else logging.INFO,
            "overloaded: degrading DNSMOS, deferring ASR work" if change.overloaded
            else "load back to normal",
            extra=fields(event="load_changed", overloaded=change.overloaded,
                         reason=change.reason, asr_lag_s=round(change.lag_s, 2),
                         asr_deferred=change.deferred, live_calls=len(self._gateway.calls),
                         asr_backlog=self._asr.backlog),
        )  # fmt: skip
        return change

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.step(time.monotonic())
            except Exception:  # measuring must never stop; the next tick tries again
                log.exception("load monitor step failed")

    def health(self) -> dict[str, Any]:
        """The /api/health document (cheap: counters and /proc reads)."""
        gw, asr, dn, w = self._gateway, self._asr, self._dnsmos, self.watch
        calls = list(gw.calls.values())
        pids = getattr(self._pool, "worker_pids", None) or []  # AsrPool: a property
        pids = list(pids() if callable(pids) else pids)
        workers = {str(pid): rss_bytes(pid) for pid in pids}
        server = rss_bytes()
        times = os.times()
        storage = self._storage_health()
        degraded = storage is not None and storage["status"] == "degraded"
        ingest = getattr(gw, "ingest", None)
        return {
            "status": "degraded" if degraded else "overloaded" if w.overloaded else "ok",
            "overloaded": w.overloaded,
            "since": self._since_wall.isoformat() if self._since_wall else None,
            "reason": self._reason,
            "degraded": list(DEGRADED_WHEN_OVERLOADED) if w.overloaded else [],
            "calls": {
                "live": sum(1 for c in calls if getattr(c, "completion", None) is None),
                # hung up, verdict waiting for transcripts
                "transcripts_pending": sum(1 for c in calls if getattr(c, "completion", None)),
                "capacity": self._s.capacity_calls or None,
            },
            "asr": {
                "lag_s": round(w.lag_s, 3),
                "backlog": asr.backlog,
                "in_flight": asr.in_flight,
                "submitted": asr.submitted,
                "deferred": self._asr_deferred(),
                "failed": asr.failed,
                "timed_out": getattr(asr, "timed_out", 0),  # given up: asr.utterance_timeout_s
            },
            "dnsmos": None if dn is None else {
                "paused": dn.paused, "sample_every_s": self._every_s, "scored": dn.scored,
                "skipped": dn.skipped, "dropped": dn.dropped, "failed": dn.failed,
                "backlog": dn.backlog, "cpu_s": round(dn.cpu_s, 3),
                "audio_s": round(dn.audio_s, 1),
            },
            "storage": storage,
            "ingest": None if ingest is None else ingest.to_doc(),
            "loop": {"interval_ms": self.loop_lag.interval_s * 1000,
                     "lag": self.loop_lag.hist.to_doc()},
            "memory": {
                "server_rss_bytes": server,
                "workers_rss_bytes": workers,
                "total_rss_bytes": (server or 0) + sum(v or 0 for v in workers.values()),
            },
            "process": {
                "open_fds": _open_fds(),
                "cpu_s": round(times.user + times.system, 3),
                "uptime_s": round(time.monotonic() - self._started, 1),
            },
        }  # fmt: skip


def _open_fds() -> int | None:
    """File descriptors this process holds (Linux /proc), None when it cannot be read."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None
