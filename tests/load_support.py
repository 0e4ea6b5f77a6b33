"""The measuring harness of the load and backpressure tests (RELIABILITY.md N9, B1, L1, L3, L4).

A real `callwatch serve` child process with the scripted transcriber at the ASR seam (so the
process, its RSS and its file descriptors are the server's alone), simulated switches from
`ivr_sim` streaming in real time from this process, and what the server measures about
itself (`monitor.runtime.latency`), read over `/api/health`:

- **ingest latency**: how late the server took each audio message against the media clock
  (per call in its stored `media` counts, all calls in `/api/health` `ingest`);
- **event-loop lag**: `/api/health` `loop.lag`;
- **RSS and open fds** of the server process, from /proc.

Health histograms are cumulative: a window's figures are the difference of two `Reading`s.
Each test compares with a baseline measured in the same run (the box is shared: absolute
figures move with whatever else runs; a difference taken minutes apart moves less).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from websockets.exceptions import ConnectionClosed

from ivr_sim import RenderedCall, builtin_scripts, load_script, render, stream_call
from ivr_sim.stream import StreamReport, call_metadata
from monitor.runtime.latency import LatencyHistogram
from tests.fixtures_server import LiveServer, make_server

API_RE = re.compile(r"api listening on (http://\S+)")
CHUNK_MS = 20
MiB = 1024 * 1024
#: A transport test measures the transport: DNSMOS (sampled, niced, the first thing shed under
#: load) and the sentence model for compliance are off; the scripted transcriber answers at once.
TRANSPORT_ENV = {
    "CALLWATCH_QUALITY__DNSMOS__ENABLED": "false",
    "CALLWATCH_COMPLIANCE__SEMANTIC": "false",
    "CALLWATCH_GATEWAY__METADATA_TIMEOUT_S": "5",
}


@dataclass(frozen=True)
class Reading:
    """One look at the server: its health document and /proc figures."""

    at: float  # monotonic
    ingest: LatencyHistogram
    loop: LatencyHistogram
    rss_bytes: int
    open_fds: int
    live_calls: int

    def window(self, later: Reading) -> Window:
        return Window(later.at - self.at, later.ingest.since(self.ingest),
                      later.loop.since(self.loop))  # fmt: skip


@dataclass(frozen=True)
class Window:
    seconds: float
    ingest: LatencyHistogram
    loop: LatencyHistogram

    def describe(self) -> str:
        i, lp = self.ingest, self.loop
        return (f"{self.seconds:.0f} s: ingest p50 {i.percentile(50):.0f} p99 "
                f"{i.percentile(99):.0f} ms ({i.total} msgs); loop lag p99 "
                f"{lp.percentile(99):.0f} max {lp.max_ms:.0f} ms")  # fmt: skip


@dataclass
class LoadServer:
    server: LiveServer
    api: str

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    def rss_bytes(self) -> int:
        with open(f"/proc/{self.pid}/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def health(self) -> dict[str, Any]:
        doc: dict[str, Any] = httpx.get(self.api + "/api/health", timeout=10).json()
        return doc

    def reading(self) -> Reading:
        doc = self.health()
        return Reading(
            time.monotonic(),
            LatencyHistogram.from_doc(doc["ingest"]),
            LatencyHistogram.from_doc(doc["loop"]["lag"]),
            self.rss_bytes(),
            self.open_fds(),
            int(doc["calls"]["live"]),
        )

    async def aread(self) -> Reading:
        """`reading()` off the event loop (the test's loop streams the calls)."""
        return await asyncio.to_thread(self.reading)

    def wait_live(self, n: int, timeout_s: float = 60.0) -> None:
        """Until the server holds exactly `n` live calls."""
        deadline = time.monotonic() + timeout_s
        while (live := self.health()["calls"]["live"]) != n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{live} live calls, waited for {n}")
            time.sleep(0.2)


@contextmanager
def load_server(tmp: Path, **env: str) -> Iterator[LoadServer]:
    """`callwatch serve` (scripted transcriber, `TRANSPORT_ENV`, then `env`) and its API URL."""
    srv = make_server(tmp, scripted=True, **{**TRANSPORT_ENV, **env})
    srv.start()
    try:
        deadline = time.monotonic() + 60
        while not (m := API_RE.search(srv.log())):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the API did not start:\n{srv.log()[-3000:]}")
            time.sleep(0.1)
        yield LoadServer(srv, m.group(1))
    finally:
        srv.stop()


# -- calls ----------------------------------------------------------------------------------
_RENDERED: dict[str, RenderedCall] = {}


def clip(call: RenderedCall, seconds: float) -> RenderedCall:
    """`call`'s audio repeated or cut to `seconds` (no turns, no IVR events)."""
    frames = int(seconds * call.sample_rate)
    reps = -(-frames // call.audio.shape[0])
    audio = np.tile(call.audio, (reps, 1))[:frames]
    return dataclasses.replace(call, audio=np.ascontiguousarray(audio), turns=(), events=())


def fleet(n: int, seconds: float) -> list[RenderedCall]:
    """`n` calls of `seconds`, cycling through the built-in scripts (8 and 16 kHz, en and zh)."""
    paths = sorted(builtin_scripts())
    for p in paths:
        if p.name not in _RENDERED:
            _RENDERED[p.name] = render(load_script(p))
    return [clip(_RENDERED[paths[i % len(paths)].name], seconds) for i in range(n)]


@dataclass
class CallRun:
    """One simulated switch: its send times (to tell a late client from a late server)."""

    external_id: str
    call: RenderedCall
    pace: float = 1.0
    sends: list[float] = field(default_factory=list)
    report: StreamReport | None = None
    close_code: int | None = None
    close_reason: str = ""
    error: str | None = None

    def _sizes(self) -> Iterator[int]:
        size = self.call.sample_rate * CHUNK_MS // 1000 * 4  # stereo L16
        while True:
            self.sends.append(time.monotonic())
            yield size

    @property
    def frames_sent(self) -> int:
        return 0 if self.report is None else self.report.bytes_sent // 4

    def client_late_ms(self) -> float:
        """How far behind its own schedule this client sent its worst chunk."""
        if len(self.sends) < 2:
            return 0.0
        step = CHUNK_MS / 1000 / self.pace
        t0 = self.sends[0]
        return 1000 * max(t - (t0 + i * step) for i, t in enumerate(self.sends[:-1]))


async def stream(url: str, run: CallRun, delay_s: float = 0.0) -> CallRun:
    """Stream `run.call` (after `delay_s`); a close or failure is recorded, not raised."""
    await asyncio.sleep(delay_s)
    meta = call_metadata(run.call, {"callid": run.external_id})
    try:
        run.report = await stream_call(url, run.call, pace=run.pace, metadata=meta,
                                       chunk_sizes=run._sizes())  # fmt: skip
        run.close_code = run.report.close_code
    except ConnectionClosed as exc:
        run.close_code = exc.rcvd.code if exc.rcvd else None
        run.close_reason = exc.rcvd.reason if exc.rcvd else ""
    except OSError as exc:
        run.error = repr(exc)
    return run


def runs(calls: Sequence[RenderedCall], tag: str, pace: float = 1.0) -> list[CallRun]:
    return [CallRun(f"{tag}-{i:03d}", c, pace) for i, c in enumerate(calls)]


async def stream_all(url: str, calls: Sequence[CallRun], ramp_s: float = 0.0) -> list[CallRun]:
    """Every call at once, their starts spread evenly over `ramp_s`."""
    step = ramp_s / max(1, len(calls))
    return list(await asyncio.gather(*(stream(url, r, i * step) for i, r in enumerate(calls))))


# -- what the server stored -----------------------------------------------------------------
@dataclass(frozen=True)
class Stored:
    """Per call, the server's own account: status, frames received, its ingest histogram."""

    status: str
    reason: str | None
    received_frames: int
    filled_frames: int
    ingest: LatencyHistogram


def stored(server: LoadServer, run: CallRun, timeout_s: float = 120.0) -> Stored:
    detail = server.server.wait_call(run.external_id, timeout_s)
    [media] = [t.data for t in detail.trace if t.kind == "media"]
    ingest = LatencyHistogram.from_doc(media["ingest"])
    return Stored(detail.status, detail.end_reason, int(media["received_frames"]),
                  int(media["filled_frames"]), ingest)  # fmt: skip


def merged(histograms: Sequence[LatencyHistogram]) -> LatencyHistogram:
    out = LatencyHistogram()
    for h in histograms:
        out.merge(h)
    return out
