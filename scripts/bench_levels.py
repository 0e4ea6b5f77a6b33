"""scripts/bench, part 2: the live pipeline, one level of N real-time calls at a time.

One real `callwatch serve` subprocess. For each level N, N calls rendered from the built-in
scripts stream at real time (starts staggered); the SQLite file is polled read-only and each
segment's latency is (first seen in the DB) - (the wall time the client sent the audio at the
end of its speech). A level is judged on latency, shedding, finalisation, drain time and live
accuracy against the offline baseline (scripts/bench_live.py); the search doubles levels
until one fails, then bisects. `soak` runs one level round after round for memory growth.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from bench_live import OfflineBaseline, ServerMeter, asr_counters, dnsmos_cpu_s, live_accuracy

from ivr_sim.harness import ServerProcess, progress
from ivr_sim.script import RenderedCall
from ivr_sim.stream import call_metadata, stream_call

ACCURACY_POINTS = 0.01  # live WER/CER may exceed the offline baseline by this much
COUNTERS_WAIT_S = 6.0  # the server logs its ASR counters every 5 s when they change
SOAK_CALLS = 8
DRAIN_LIMIT_S = 10.0
BACKLOG_LIMIT_S = 300.0  # a failed level still waits this long so the next one starts clean
POLL_S = 0.1
CHUNK_MS = 20


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# -- 2. pipeline: server and database -------------------------------------------------------
class Server(ServerProcess):
    """A `callwatch serve` subprocess on port 0 with its own data directory."""

    def __init__(self, workdir: Path, env: dict[str, str]) -> None:
        super().__init__(data_dir=workdir / "data", env=env, log_path=workdir / "server.log")

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0


@dataclass(frozen=True, slots=True)
class SeenSegment:
    call_id: str
    party: str
    start_ms: int
    end_ms: int
    asr_ms: int | None  # the server's own queue-to-result latency
    seen: float  # monotonic time of the first poll that returned it


class DbWatch:
    """Read-only view of the server's SQLite file; remembers when each segment appeared."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
        self._last_id = 0
        self.segments: list[SeenSegment] = []

    def poll(self) -> None:
        rows = self._conn.execute(
            "SELECT id, call_id, party, start_ms, end_ms, latency_ms FROM segments "
            "WHERE id > ? ORDER BY id",
            (self._last_id,),
        ).fetchall()
        now = time.monotonic()
        for seg_id, call_id, party, start_ms, end_ms, asr_ms in rows:
            self.segments.append(SeenSegment(call_id, party, start_ms, end_ms, asr_ms, now))
            self._last_id = seg_id

    def calls(self, external_ids: list[str]) -> dict[str, tuple[str, str, int | None]]:
        """external id -> (call id, status, duration_ms)."""
        marks = ",".join("?" * len(external_ids))
        rows = self._conn.execute(
            f"SELECT external_id, id, status, duration_ms FROM calls "
            f"WHERE external_id IN ({marks})",
            external_ids,
        ).fetchall()
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def utterances(self, call_ids: list[str]) -> list[tuple[str, str, str, int, int, bool]]:
        """(call id, kind, party, start_ms, end_ms, capped) of each utterance sent to ASR."""
        marks = ",".join("?" * len(call_ids))
        rows = self._conn.execute(
            f"SELECT call_id, kind, party, media_ms, json_extract(data, '$.end_ms'), "
            f"coalesce(json_extract(data, '$.capped'), 0) FROM trace_events "
            f"WHERE kind IN ('utterance', 'asr_shed') AND call_id IN ({marks})",
            call_ids,
        ).fetchall()
        return [(r[0], r[1], r[2], int(r[3]), int(r[4]), bool(r[5])) for r in rows]

    def close(self) -> None:
        self._conn.close()


# -- 2. pipeline: one level -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Plan:
    """How every level is run and judged."""

    url: str
    server_pid: int
    calls: list[RenderedCall]
    stagger_s: float
    pad_ms: int
    slo_s: float
    log_path: Path
    db_path: Path
    baseline: OfflineBaseline


@dataclass
class CallTrack:
    """One simulated call: which script, its switch id, and when each 20 ms chunk left."""

    external_id: str
    script: str
    call: RenderedCall
    sends: list[float] = field(default_factory=list)
    error: str | None = None

    def sent_at(self, media_ms: int) -> float:
        """Wall (monotonic) time the client sent the audio at `media_ms`."""
        index = max(0, (media_ms - 1) // CHUNK_MS)
        return self.sends[min(index, len(self.sends) - 1)]

    def chunk_sizes(self) -> Iterator[int]:
        """Fed to `stream_call(chunk_sizes=...)`: each size is pulled just before its send."""
        size = self.call.sample_rate * CHUNK_MS // 1000 * 4  # stereo L16
        while True:
            self.sends.append(time.monotonic())
            yield size

    def lag_s(self) -> float:
        """How far behind real time the client sent its latest chunk (client overload)."""
        if len(self.sends) < 2:
            return 0.0
        t0, step = self.sends[0], CHUNK_MS / 1000
        return max(t - (t0 + i * step) for i, t in enumerate(self.sends[:-1]))


@dataclass(frozen=True, slots=True)
class LevelResult:
    n: int
    calls_ok: int  # streamed without error and finalised as completed
    utterances: int  # sent to ASR (transcribed or shed)
    segments: int  # stored with text
    p50_s: float
    p95_s: float
    max_s: float
    asr_p50_s: float  # the server's own utterance-queued -> result part (segments.latency_ms)
    asr_p95_s: float
    rest_p50_s: float  # latency minus that: VAD end silence, storage batching, our polling
    shed: int
    drain_s: float | None  # last stream end -> every call finalised; None = over the limit
    client_lag_s: float
    passed: bool
    problems: list[str]
    per_call: list[tuple[str, int, int, int]]  # script, utterance audio ms, duration ms, utts
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core while the level ran
    late: int = 0  # transcribed from the catch-up lane (flagged late)
    deferred: int = 0  # audio released past asr.catchup_max_s (re-read from the recording)
    fallbacks: int = 0  # short-window decodes redone on the full window
    transcribed: int = 0
    rss_server_mb: float = 0.0  # peak while the level ran
    rss_workers_mb: float = 0.0
    wer: float = float("nan")  # live transcripts of this level's English calls
    cer: float = float("nan")  # ... and Mandarin calls
    base_wer: float = float("nan")  # offline full-window greedy on the same turns
    base_cer: float = float("nan")


async def _stream(url: str, track: CallTrack, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    meta = call_metadata(track.call, {"callid": track.external_id})
    try:
        await stream_call(
            url,
            track.call,
            pace=1.0,
            chunk_ms=CHUNK_MS,
            metadata=meta,
            chunk_sizes=track.chunk_sizes(),
        )
    except Exception as exc:  # reported per level, never fatal to the benchmark
        track.error = f"{type(exc).__name__}: {exc}"


async def _poll_until(watch: DbWatch, stop: asyncio.Event, meter: ServerMeter) -> None:
    polls = 0
    while not stop.is_set():
        await asyncio.to_thread(watch.poll)
        polls += 1
        if polls % 10 == 0:
            await asyncio.to_thread(meter.sample)
        await asyncio.sleep(POLL_S)


async def _wait_finalised(watch: DbWatch, ids: list[str], limit_s: float) -> float | None:
    """Seconds until every call is out of `active`, or None past `limit_s`."""
    started = time.monotonic()
    while time.monotonic() - started < limit_s:
        calls = await asyncio.to_thread(watch.calls, ids)
        if len(calls) == len(ids) and all(c[1] != "active" for c in calls.values()):
            return time.monotonic() - started
        await asyncio.sleep(POLL_S)
    return None


async def run_level(plan: Plan, watch: DbWatch, n: int) -> LevelResult:
    tag = uuid.uuid4().hex[:6]
    tracks = [
        CallTrack(
            f"bench-{tag}-n{n}-{i}",
            plan.calls[i % len(plan.calls)].script.name,
            plan.calls[i % len(plan.calls)],
        )
        for i in range(n)
    ]
    client_cpu0 = time.process_time()  # this process: the simulated switches
    meter = ServerMeter(plan.server_pid)
    before = asr_counters(plan.log_path.read_text(errors="replace"))
    dnsmos_before = await asyncio.to_thread(dnsmos_cpu_s, plan.log_path)
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll_until(watch, stop, meter))
    await asyncio.gather(*(_stream(plan.url, t, i * plan.stagger_s) for i, t in enumerate(tracks)))
    ids = [t.external_id for t in tracks if t.sends or t.error is None]  # refused: no record
    drain = await _wait_finalised(watch, ids, DRAIN_LIMIT_S)
    # Before any backlog wait, which would dilute it.
    client = 100 * (time.process_time() - client_cpu0) / meter.wall_s
    usage = {**meter.read(), "client": round(client, 1)}
    # DNSMOS runs in the server's threads: its own CPU clock, from /api/health.
    dnsmos_after = await asyncio.to_thread(dnsmos_cpu_s, plan.log_path)
    usage["dnsmos"] = round(100 * (dnsmos_after - dnsmos_before) / meter.wall_s, 1)
    if drain is None:
        progress(f"[pipeline] N={n}: transcripts late; waiting for the backlog to clear")
        await _wait_finalised(watch, ids, BACKLOG_LIMIT_S)
    await asyncio.sleep(COUNTERS_WAIT_S)  # the server's next counters line
    stop.set()
    await poller
    await asyncio.to_thread(watch.poll)
    after = asr_counters(plan.log_path.read_text(errors="replace"))
    delta = {k: int(after.get(k, 0) - before.get(k, 0)) for k in after}
    level = replace(
        measure_level(plan, watch, tracks, drain),
        cpu=usage,
        late=delta.get("late", 0),
        deferred=delta.get("deferred", 0),
        fallbacks=delta.get("fallbacks", 0),
        transcribed=delta.get("live", 0) + delta.get("late", 0),
        rss_server_mb=round(meter.rss_server_mb),
        rss_workers_mb=round(meter.rss_workers_mb),
    )
    return judge_accuracy(plan, tracks, level)


def judge_accuracy(plan: Plan, tracks: list[CallTrack], level: LevelResult) -> LevelResult:
    """The level's live WER/CER next to the offline baseline on the same turns."""
    watch = DbWatch(plan.db_path)
    try:
        ids = watch.calls([t.external_id for t in tracks])
    finally:
        watch.close()
    calls = {ids[t.external_id][0]: t.call for t in tracks if t.external_id in ids}
    pairs, (wer, cer) = live_accuracy(plan.db_path, calls)
    base_wer, base_cer = plan.baseline.score_like(pairs)
    problems = list(level.problems)
    for name, ours, base in (("WER", wer, base_wer), ("CER", cer, base_cer)):
        if ours == ours and ours > base + ACCURACY_POINTS:
            problems.append(f"live {name} {ours:.1%} > offline {base:.1%} + 1 point")
    return replace(
        level,
        wer=wer,
        cer=cer,
        base_wer=base_wer,
        base_cer=base_cer,
        problems=problems,
        passed=not problems,
    )


def _latencies(
    plan: Plan,
    watch: DbWatch,
    by_call: dict[str, CallTrack],
    capped: set[tuple[str, str, int, int]],
) -> tuple[list[float], list[float]]:
    """(end of speech -> first seen, the server's ASR part) for each segment of these calls."""
    total, asr = [], []
    for seg in watch.segments:
        track = by_call.get(seg.call_id)
        if track is None:
            continue
        key = (seg.call_id, seg.party, seg.start_ms, seg.end_ms)
        speech_end = seg.end_ms if key in capped else max(seg.start_ms, seg.end_ms - plan.pad_ms)
        total.append(seg.seen - track.sent_at(speech_end))
        asr.append(seg.asr_ms / 1000 if seg.asr_ms is not None else float("nan"))
    return total, asr


def measure_level(
    plan: Plan, watch: DbWatch, tracks: list[CallTrack], drain: float | None
) -> LevelResult:
    calls = watch.calls([t.external_id for t in tracks])
    by_call = {calls[t.external_id][0]: t for t in tracks if t.external_id in calls}
    utts = watch.utterances(list(by_call)) if by_call else []
    capped = {(c, p, s, e) for c, kind, p, s, e, cap in utts if kind == "utterance" and cap}
    total, asr = _latencies(plan, watch, by_call, capped)
    per_call = [
        (
            track.script,
            sum(e - s for c, _, _, s, e, _ in utts if c == call_id),
            calls[track.external_id][2] or 0,
            sum(1 for u in utts if u[0] == call_id),
        )
        for call_id, track in by_call.items()
    ]
    shed = sum(1 for u in utts if u[1] == "asr_shed")
    p95 = percentile(total, 95)
    problems = _problems(tracks, calls, drain, shed)
    if not total or not p95 <= plan.slo_s:
        problems.append(f"latency p95 {p95:.2f} s > {plan.slo_s:g} s")
    return LevelResult(
        n=len(tracks),
        calls_ok=sum(
            1
            for t in tracks
            if t.error is None and calls.get(t.external_id, ("", ""))[1] == "completed"
        ),
        utterances=len(utts),
        segments=len(total),
        p50_s=percentile(total, 50),
        p95_s=p95,
        max_s=max(total, default=float("nan")),
        asr_p50_s=percentile(asr, 50),
        asr_p95_s=percentile(asr, 95),
        rest_p50_s=percentile([t - a for t, a in zip(total, asr, strict=True)], 50),
        shed=shed,
        drain_s=drain,
        client_lag_s=max(t.lag_s() for t in tracks),
        passed=not problems,
        problems=problems,
        per_call=per_call,
    )


def _problems(
    tracks: list[CallTrack],
    calls: dict[str, tuple[str, str, int | None]],
    drain: float | None,
    shed: int,
) -> list[str]:
    out = [f"{t.external_id}: {t.error}" for t in tracks if t.error]
    for t in tracks:
        status = calls.get(t.external_id, ("", "missing"))[1]
        if status != "completed":
            out.append(f"{t.external_id}: status {status}")
    if drain is None:
        out.append(f"last transcripts later than {DRAIN_LIMIT_S:g} s after the streams ended")
    if shed:
        out.append(f"{shed} utterance(s) shed")
    return out
