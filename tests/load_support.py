"""The measuring harness of the load and backpressure tests (RELIABILITY.md N9, B1, L1, L3, L4).

A real `callwatch serve` child process with the scripted transcriber at the ASR seam (so the
process, its RSS and its file descriptors are the server's alone), simulated switches from
`ivr_sim` streaming in real time from this process, and what the server measures about
itself (`monitor.runtime.latency`), read over `/api/health`:

- **ingest latency**: how late the server took each audio message against the media clock
  (per call in its stored `media` counts, all calls in `/api/health` `ingest`);
- **event-loop lag**: `/api/health` `loop.lag`;
- **RSS and open fds** of the server process, from /proc; what a call may hold in audio by
  design (`audio_allowance_mib`, from the server's settings: `monitor.runtime.footprint`).

Health histograms are cumulative: a window's figures are the difference of two `Reading`s.
Each test compares with a baseline measured in the same run (the box is shared: absolute
figures move with whatever else runs; a difference taken minutes apart moves less).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    cpu_s: float  # the server process's CPU seconds so far (all threads)

    def window(self, later: Reading) -> Window:
        return Window(later.at - self.at, later.ingest.since(self.ingest),
                      later.loop.since(self.loop), later.cpu_s - self.cpu_s)  # fmt: skip


@dataclass(frozen=True)
class Window:
    seconds: float
    ingest: LatencyHistogram
    loop: LatencyHistogram

    cpu_s: float = 0.0

    def describe(self) -> str:
        i, lp = self.ingest, self.loop
        return (f"{self.seconds:.0f} s: ingest p50 {i.percentile(50):.0f} p99 "
                f"{i.percentile(99):.0f} ms ({i.total} msgs); loop lag p99 "
                f"{lp.percentile(99):.0f} max {lp.max_ms:.0f} ms; server CPU "
                f"{100 * self.cpu_s / self.seconds:.0f} % of a core")  # fmt: skip


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
            float(doc["process"]["cpu_s"]),
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
    chunk_ms: int = CHUNK_MS
    sends: list[float] = field(default_factory=list)
    report: StreamReport | None = None
    close_code: int | None = None
    close_reason: str = ""
    error: str | None = None

    def _sizes(self) -> Iterator[int]:
        size = self.call.sample_rate * self.chunk_ms // 1000 * 4  # stereo L16
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
        step = self.chunk_ms / 1000 / self.pace
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
    recording_frames: int | None
    ingest: LatencyHistogram
    protocol_error: str | None  # the close reason, when the gateway closed it for one


def stored(server: LoadServer, run: CallRun, timeout_s: float = 120.0) -> Stored:
    detail = server.server.wait_call(run.external_id, timeout_s)
    [media] = [t.data for t in detail.trace if t.kind == "media"]
    ingest = LatencyHistogram.from_doc(media["ingest"])
    errors = [str(t.data.get("reason")) for t in detail.trace if t.kind == "protocol_error"]
    return Stored(detail.status, detail.end_reason, int(media["received_frames"]),
                  int(media["filled_frames"]), detail.recording_frames, ingest,
                  errors[0] if errors else None)  # fmt: skip


def merged(histograms: Sequence[LatencyHistogram]) -> LatencyHistogram:
    out = LatencyHistogram()
    for h in histograms:
        out.merge(h)
    return out


# -- board clients --------------------------------------------------------------------------
BOARD_USER, BOARD_PASSWORD = "floor-sup", "load-test-password"


def board_token(server: LoadServer) -> str:
    """A supervisor's token (the user is made on first use)."""
    from storage.access import AccessStore, UserExists

    with contextlib.suppress(UserExists):
        AccessStore(server.server.repo.engine).create_user(
            BOARD_USER, BOARD_PASSWORD, "supervisor", at=datetime.now(UTC)
        )
    r = httpx.post(server.api + "/api/login", timeout=30,
                   json={"username": BOARD_USER, "password": BOARD_PASSWORD})  # fmt: skip
    r.raise_for_status()
    return str(r.json()["token"])


class StuckBoardClient:
    """A board websocket client that never reads: the handshake by hand on a raw socket with
    a small receive buffer, then nothing, so the server's sends back up to it."""

    def __init__(self, api: str, token: str) -> None:
        host, port = api.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        self.sock.sendall(
            (f"GET /board/ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             f"Sec-WebSocket-Version: 13\r\nCookie: cw_token={token}\r\n\r\n").encode()
        )  # fmt: skip
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)  # the response head only: the snapshot stays unread
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"board handshake refused: {head[:80]!r}")
        self.port = self.sock.getsockname()[1]
        self.server_port = int(port)

    def connected(self) -> bool:
        """Whether the server still holds its end of the connection: ESTABLISHED in
        /proc/net/tcp. A server that closed it leaves FIN_WAIT (the FIN waits behind the unread
        data) or, aborted, nothing."""
        server = f":{self.server_port:04X}"
        me = f":{self.port:04X}"
        with open("/proc/net/tcp", encoding="ascii") as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[1].endswith(server) and cols[2].endswith(me):
                    return cols[3] == "01"
        return False

    def close(self) -> None:
        self.sock.close()


def audio_allowance_mib(server: LoadServer, calls: Sequence[RenderedCall]) -> float:
    """The audio one of `calls` may hold on this server by design, on average (MiB):
    `monitor.runtime.footprint` from the server's own settings, per call's rate and parties."""
    from config.settings import load_settings
    from monitor.runtime.footprint import call_audio_allowance

    settings = load_settings(env=server.server.env)
    total = sum(call_audio_allowance(settings, c.sample_rate, c.audio.shape[1]) for c in calls)
    return total / max(1, len(calls)) / MiB


def server_errors(server: LoadServer) -> list[str]:
    """ERROR / CRITICAL lines and tracebacks in the server's log."""
    return [line for line in server.server.log().splitlines()
            if " ERROR " in line or " CRITICAL " in line or "Traceback" in line]  # fmt: skip
