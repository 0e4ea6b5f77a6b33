"""callwatch benchmark: ASR engine throughput, then the live pipeline's call capacity.

    scripts/bench                    # full run (~10 min on an idle 2-core machine)
    scripts/bench --quick            # 20 clips, pipeline levels 1 and 2 (~3 min)
    scripts/bench --levels 4,6,8     # pipeline levels to run, instead of the search
    scripts/bench --slo 5            # judge levels against another latency p95 bound
    scripts/bench --soak             # 8 calls at a time for 30 min: RSS growth (not a test)
    scripts/bench --json out.json    # also write the figures as JSON
    scripts/bench --skip-engine --check-record   # fail (exit 3) if the capacity fell > 10 %
    scripts/bench --skip-engine --record         # take this run's capacity as the record

Settings come from the usual places (defaults, CALLWATCH_CONFIG, CALLWATCH_* variables), so
e.g. `CALLWATCH_ASR__WORKERS=1 CALLWATCH_ASR__CPU_THREADS=2 scripts/bench` measures another
layout; both the engine part and the server use them.

1. Engine: every en/ and zh/ clip of tests/data/speech with a transcript goes through an
   `AsrPool` built from the settings (by default one worker per core, the bundled model joined
   once into <repo>/.cache/models), all submitted at once, one utterance per batch; then
   through one in-process `WhisperEngine`. Throughput is audio seconds per wall second (and
   per CPU second, which other load on the machine distorts less); accuracy is corpus WER
   (English) and CER (Mandarin).
2. Pipeline: one real `callwatch serve` subprocess. For each level N, N calls rendered from
   the built-in scripts stream at real time (starts staggered); the SQLite file is polled
   read-only and each segment's latency is (first seen in the DB) - (the wall time the
   client sent the audio at the end of its speech, i.e. segment end_ms - vad.pad_ms, or
   end_ms for a capped utterance). A level passes when p95 <= 1.5 s, nothing was shed, every
   call was finalised as completed, the last transcripts landed within 10 s of the streams'
   end, and the live transcripts' WER (English calls) / CER (Mandarin calls) is within 1
   point of faster-whisper's offline full-window greedy decode of the same turns
   (scripts/bench_live.py). Levels double from 1 until one fails, then bisect. Per level it
   prints latency, utterances caught up late or deferred to the recording, how often a
   short-window decode fell back to 30 s, CPU per component (event loop, the server's other
   threads, ASR workers), peak RSS, and the accuracy pair; then the capacity at p95 <= 1 s
   and <= 1.5 s.
3. Capacity: the engine alone allows throughput / (utterance audio per call-second) calls;
   the pipeline's capacity is printed as a percentage of that.

Progress goes to stderr; the figures go to stdout as one block.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import bench_record
import numpy as np
import numpy.typing as npt
from bench_live import OfflineBaseline, ServerMeter, asr_counters, dnsmos_cpu_s, live_accuracy

from asr.engine import EngineConfig
from asr.pool import AsrPool
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult
from config.settings import Settings, load_settings
from evaluation.scoring import corpus_cer, corpus_wer
from ivr_sim.harness import MODEL_CACHE, REPO_ROOT, ServerProcess, proc_stat, session_cpu_s
from ivr_sim.script import RenderedCall, builtin_scripts, load_clip, load_script, render
from ivr_sim.stream import call_metadata, stream_call

CORPUS = REPO_ROOT / "tests" / "data" / "speech"
LATENCY_SLO_S = 1.5
STRICT_SLO_S = 1.0
ACCURACY_POINTS = 0.01  # live WER/CER may exceed the offline baseline by this much
COUNTERS_WAIT_S = 6.0  # the server logs its ASR counters every 5 s when they change
SOAK_CALLS = 8
DRAIN_LIMIT_S = 10.0
BACKLOG_LIMIT_S = 300.0  # a failed level still waits this long so the next one starts clean
POLL_S = 0.1
CHUNK_MS = 20
QUICK_CLIPS = 20
QUICK_LEVELS = (1, 2)
RECORD_PATH = REPO_ROOT / "docs" / "capacity-record.json"  # RELIABILITY.md L2
STARTED = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# -- CPU accounting (Linux /proc) ---------------------------------------------------------------


def pids_cpu_s(pids: list[int]) -> float:
    return sum(stat[1] for pid in pids if (stat := proc_stat(pid)) is not None)


class CpuMeter:
    """CPU used since creation, in % of one core: the server's main process (event loop and
    its threads), its other processes (the ASR workers), and this process (the switches)."""

    def __init__(self, server_pid: int) -> None:
        self._pid = server_pid
        self._t0, self._own = time.monotonic(), time.process_time()
        self._procs = session_cpu_s(server_pid)

    def read(self) -> dict[str, float]:
        wall = time.monotonic() - self._t0
        used = {p: s - self._procs.get(p, 0.0) for p, s in session_cpu_s(self._pid).items()}
        main = used.pop(self._pid, 0.0)
        return {
            "server_main": round(100 * main / wall, 1),
            "asr_workers": round(100 * sum(used.values()) / wall, 1),
            "client": round(100 * (time.process_time() - self._own) / wall, 1),
        }


# -- 1. engine --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Clip:
    file: str
    language: str
    reference: str
    audio: npt.NDArray[np.float32]

    @property
    def seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True, slots=True)
class EngineRun:
    mode: str
    workers: int
    clips: int
    audio_s: float
    wall_s: float
    xrt: float  # audio seconds per wall second
    xrt_per_worker: float
    utterances_per_s: float
    busy: float  # compute time reported by the engine / (wall x workers)
    cpu_s: float  # CPU time the engine process(es) used
    xrt_cpu: float  # audio seconds per CPU second: what an idle core would do
    en_wer: float
    zh_cer: float


def load_corpus(limit: int | None) -> list[Clip]:
    """en/ and zh/ clips with a transcript; `limit` picks that many, half per language."""
    with (CORPUS / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh, delimiter="\t")
            if r["file"].startswith(("en/", "zh/")) and r["transcript"].strip()
        ]
    if limit is not None:
        picked = []
        for lang in ("en", "zh"):
            same = [r for r in rows if r["language"] == lang]
            step = max(1, len(same) // max(1, limit // 2))
            picked += same[::step][: limit // 2]
        rows = picked
    return [
        Clip(
            r["file"],
            r["language"],
            r["transcript"],
            load_clip(CORPUS / r["file"], SAMPLE_RATE).astype(np.float32) / 32768.0,
        )
        for r in rows
    ]


def summarise(
    mode: str,
    workers: int,
    clips: list[Clip],
    results: list[AsrResult],
    wall_s: float,
    cpu_s: float,
) -> EngineRun:
    audio_s = sum(c.seconds for c in clips)
    by_lang: dict[str, tuple[list[str], list[str]]] = {"en": ([], []), "zh": ([], [])}
    for clip, result in zip(clips, results, strict=True):
        by_lang[clip.language][0].append(clip.reference)
        by_lang[clip.language][1].append(result.text)
    return EngineRun(
        mode=mode,
        workers=workers,
        clips=len(clips),
        audio_s=audio_s,
        wall_s=wall_s,
        xrt=audio_s / wall_s,
        xrt_per_worker=audio_s / wall_s / workers,
        utterances_per_s=len(clips) / wall_s,
        busy=sum(r.compute_s for r in results) / (wall_s * workers),
        cpu_s=cpu_s,
        xrt_cpu=audio_s / cpu_s if cpu_s > 0 else float("nan"),
        en_wer=corpus_wer(*by_lang["en"]) if by_lang["en"][0] else float("nan"),
        zh_cer=corpus_cer(*by_lang["zh"]) if by_lang["zh"][0] else float("nan"),
    )


def _tick(label: str, total: int) -> Callable[[], None]:
    done = 0
    every = max(1, total // 5)

    def tick() -> None:
        nonlocal done
        done += 1
        if done % every == 0 or done == total:
            progress(f"[engine] {label} {done}/{total} clips")

    return tick


async def bench_pool(settings: Settings, clips: list[Clip]) -> EngineRun:
    """All clips submitted at once, one utterance per batch, so every worker stays busy."""
    async with AsrPool(settings.asr, settings.model_cache_dir) as pool:
        warm = [AsrRequest(clips[0].audio[: 2 * SAMPLE_RATE])]
        await asyncio.gather(*(pool.transcribe_batch(warm) for _ in range(pool.worker_count)))
        tick = _tick(f"pool ({pool.worker_count} workers)", len(clips))

        async def one(clip: Clip) -> AsrResult:
            result = (await pool.transcribe_batch([AsrRequest(clip.audio)]))[0]
            tick()
            return result

        cpu0, started = pids_cpu_s(pool.worker_pids), time.perf_counter()
        results = await asyncio.gather(*(one(c) for c in clips))
        wall, cpu = time.perf_counter() - started, pids_cpu_s(pool.worker_pids) - cpu0
        return summarise("pool", pool.worker_count, clips, list(results), wall, cpu)


def bench_single(config: EngineConfig, clips: list[Clip]) -> EngineRun:
    """One in-process engine, one utterance after another."""
    engine = config.build()
    engine.transcribe_batch([AsrRequest(clips[0].audio[: 2 * SAMPLE_RATE])])  # warm-up
    tick = _tick("single (1 in-process engine)", len(clips))
    results = []
    cpu0, started = time.process_time(), time.perf_counter()
    for clip in clips:
        results.append(engine.transcribe_batch([AsrRequest(clip.audio)])[0])
        tick()
    return summarise(
        "single", 1, clips, results, time.perf_counter() - started, time.process_time() - cpu0
    )


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
    cpu = CpuMeter(plan.server_pid)
    meter = ServerMeter(plan.server_pid)
    before = asr_counters(plan.log_path.read_text(errors="replace"))
    dnsmos_before = await asyncio.to_thread(dnsmos_cpu_s, plan.log_path)
    stop = asyncio.Event()
    poller = asyncio.create_task(_poll_until(watch, stop, meter))
    await asyncio.gather(*(_stream(plan.url, t, i * plan.stagger_s) for i, t in enumerate(tracks)))
    ids = [t.external_id for t in tracks if t.sends or t.error is None]  # refused: no record
    drain = await _wait_finalised(watch, ids, DRAIN_LIMIT_S)
    # Before any backlog wait, which would dilute it.
    usage = {**meter.read(), "client": cpu.read()["client"]}
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


# -- 2. pipeline: the search ------------------------------------------------------------------
async def search_levels(
    run: Callable[[int], Awaitable[LevelResult]], explicit: list[int] | None, max_level: int
) -> list[LevelResult]:
    """Explicit levels in order; else 1, 2, 4, ... until a failure, then bisect."""
    results: list[LevelResult] = []
    if explicit:
        for n in explicit:
            results.append(await run(n))
        return results
    passed, failed, n = 0, None, 1
    while failed is None and n <= max_level:
        results.append(await run(n))
        if results[-1].passed:
            passed, n = n, n * 2
        else:
            failed = n
    while failed is not None and failed - passed > 1:
        mid = (passed + failed) // 2
        results.append(await run(mid))
        if results[-1].passed:
            passed = mid
        else:
            failed = mid
    return results


async def bench_pipeline(
    server: Server, settings: Settings, args: argparse.Namespace
) -> list[LevelResult]:
    calls = [render(load_script(p)) for p in builtin_scripts()]
    progress("[pipeline] offline full-window greedy baseline on the calls' turns")
    baseline = OfflineBaseline(EngineConfig.from_settings(settings.asr, settings.model_cache_dir))
    await asyncio.to_thread(baseline.prepare, calls)
    plan = Plan(
        url=server.url,
        server_pid=server.pid,
        calls=calls,
        stagger_s=args.stagger,
        pad_ms=settings.vad.pad_ms,
        slo_s=args.slo,
        log_path=server.log_path,
        db_path=server.db_path,
        baseline=baseline,
    )
    watch = DbWatch(server.db_path)

    async def run(n: int) -> LevelResult:
        if server.proc is None or server.proc.poll() is not None:
            raise RuntimeError(f"the server has exited; see {server.log_path}")
        progress(f"[pipeline] N={n}: streaming {n} call(s) at real time")
        result = await run_level(plan, watch, n)
        verdict = "pass" if result.passed else "FAIL: " + "; ".join(result.problems[:3])
        progress(
            f"[pipeline] N={n}: latency p50 {result.p50_s:.2f} s, p95 "
            f"{result.p95_s:.2f} s, shed {result.shed}, cpu {result.cpu}: {verdict}"
        )
        return result

    try:
        if args.soak:
            return await soak(run, args.soak * 60)
        return await search_levels(run, args.level_list, args.max_level)
    finally:
        watch.close()


async def soak(run: Callable[[int], Awaitable[LevelResult]], seconds: float) -> list[LevelResult]:
    """`SOAK_CALLS` calls at a time, round after round, for `seconds`: memory must not grow."""
    results: list[LevelResult] = []
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        results.append(await run(SOAK_CALLS))
        first, last = results[0], results[-1]
        progress(
            f"[soak] {(time.monotonic() - started) / 60:.1f} min: RSS server "
            f"{first.rss_server_mb:.0f} -> {last.rss_server_mb:.0f} MB, workers "
            f"{first.rss_workers_mb:.0f} -> {last.rss_workers_mb:.0f} MB"
        )
    return results


# -- 3. figures ---------------------------------------------------------------------------------
def call_load(levels: list[LevelResult]) -> tuple[float, float]:
    """(utterance audio s, utterances) that one call sends to ASR per call-second, over the
    scripts seen: each script's mean call counts once, as in the levels' rotation."""
    rows: dict[str, list[tuple[int, int, int]]] = {}
    for level in levels:
        for script, speech_ms, duration_ms, utts in level.per_call:
            rows.setdefault(script, []).append((speech_ms, duration_ms, utts))
    means = [[statistics.mean(col) for col in zip(*v, strict=True)] for v in rows.values()]
    duration = sum(m[1] for m in means)
    if not duration:
        return float("nan"), float("nan")
    return sum(m[0] for m in means) / duration, sum(m[2] for m in means) / duration * 1000


def capacity(levels: list[LevelResult], slo_s: float | None = None) -> int:
    """The largest level that passed; with `slo_s`, judged against that p95 bound instead."""
    if slo_s is None:
        return max((lv.n for lv in levels if lv.passed), default=0)
    return max(
        (
            lv.n
            for lv in levels
            if lv.p95_s <= slo_s and all(p.startswith("latency p95") for p in lv.problems)
        ),
        default=0,
    )


def compare(pool: EngineRun | None, levels: list[LevelResult]) -> dict[str, Any]:
    speech, utts = call_load(levels)
    out: dict[str, Any] = {
        "pipeline_capacity_calls": capacity(levels),
        "capacity_p95_1s": capacity(levels, STRICT_SLO_S),
        "capacity_p95_1_5s": capacity(levels, LATENCY_SLO_S),
        "speech_s_per_call_s": speech,
        "utterances_per_call_s": utts,
    }
    lone = next((lv for lv in levels if lv.n == 1), None)
    if lone is not None and not lone.passed:
        out["one_call"] = {
            "p50_s": lone.p50_s,
            "p95_s": lone.p95_s,
            "asr_p50_s": lone.asr_p50_s,
            "rest_p50_s": lone.rest_p50_s,
        }
    if pool is not None and speech > 0:
        engine_calls = pool.xrt / speech
        out["engine_limited_calls"] = engine_calls
        out["engine_limited_calls_by_utterance_count"] = pool.utterances_per_s / utts
        out["pipeline_vs_engine"] = capacity(levels) / engine_calls
    return out


def settings_figures(settings: Settings, config: EngineConfig) -> dict[str, Any]:
    a = settings.asr
    return {
        "model": a.model,
        "model_path": config.model,
        "device": config.device,
        "compute_type": config.compute_type,
        "workers": a.workers or os.cpu_count() or 1,
        "workers_setting": a.workers,
        "cpu_threads": a.cpu_threads,
        "beam_size": a.beam_size,
        "language": a.language,
        "batch_size": a.batch_size,
        "queue_size": a.queue_size,
        "vad_pad_ms": settings.vad.pad_ms,
        "vad_end_silence_ms": settings.vad.end_silence_ms,
        "storage_group_commit_s": settings.storage.group_commit_s,
    }


# -- output -------------------------------------------------------------------------------------
def _engine_lines(engine: dict[str, Any]) -> list[str]:
    lines = []
    for run in (engine.get("pool"), engine.get("single")):
        if run is None:
            continue
        lines += [
            f"  {run['mode']:6} {run['workers']} worker(s): {run['clips']} clips, "
            f"{run['audio_s']:.1f} s of audio in {run['wall_s']:.1f} s = {run['xrt']:.2f}x real "
            f"time ({run['xrt_per_worker']:.2f}x per worker), {run['utterances_per_s']:.2f} utt/s",
            f"         busy {run['busy']:.0%}, {run['cpu_s']:.1f} CPU-s = {run['xrt_cpu']:.2f} "
            f"audio-s per CPU-s; en WER {run['en_wer']:.3f}, zh CER {run['zh_cer']:.3f}",
        ]
    if "second_worker_gain" in engine:
        lines.append(f"  pool / single: {engine['second_worker_gain']:.2f}x")
    return lines


def _level_lines(levels: list[dict[str, Any]]) -> list[str]:
    lines = [
        "     N calls utts |  p50   p95   max | shed late defer  fb% | cpu% loop  thr (dns)  asr"
        " | RSS MB srv  wrk |  WER  (off)   CER  (off) | result",
    ]
    for lv in sorted(levels, key=lambda x: x["n"]):
        cpu = lv["cpu"]
        fb = 100 * lv["fallbacks"] / lv["transcribed"] if lv["transcribed"] else 0.0
        lines.append(
            f"  {lv['n']:4d} {lv['calls_ok']:2d}/{lv['n']:<2d} {lv['utterances']:4d} | "
            f"{lv['p50_s']:4.2f} {lv['p95_s']:5.2f} {lv['max_s']:5.2f} | "
            f"{lv['shed']:4d} {lv['late']:4d} {lv['deferred']:5d} {fb:4.1f} | "
            f"{cpu.get('loop', 0):8.0f} {cpu.get('threads', 0):4.0f} ({cpu.get('dnsmos', 0):3.0f}) "
            f"{cpu.get('asr', 0):4.0f} | "
            f"{lv['rss_server_mb']:10.0f} {lv['rss_workers_mb']:4.0f} | "
            f"{lv['wer']:5.1%} {lv['base_wer']:5.1%} {lv['cer']:5.1%} {lv['base_cer']:5.1%} | "
            f"{'pass' if lv['passed'] else 'FAIL'}"
        )
    return lines


def render_report(fig: dict[str, Any]) -> str:
    s, host = fig["settings"], fig["host"]
    lines = [
        f"== callwatch bench ({fig['mode']}) on {host['cores']} cores; load average "
        f"{host['load_start']} at start, {host['load_end']} at end ==",
        f"settings  model {s['model']} ({Path(s['model_path']).name}) {s['device']}/"
        f"{s['compute_type']}, {s['workers']} ASR workers x {s['cpu_threads']} thread, beam "
        f"{s['beam_size']}, language {s['language']}, batch {s['batch_size']}, queue "
        f"{s['queue_size']}; vad pad {s['vad_pad_ms']} ms, end silence "
        f"{s['vad_end_silence_ms']} ms; storage group commit {s['storage_group_commit_s']} s",
    ]
    if float(host["load_start"].split()[0]) > (host["cores"] or 1):
        lines.append(
            f"WARNING   load average above {host['cores']} at start: other processes "
            f"shared the CPU, wall-time figures are low (CPU-s figures less so)"
        )
    if fig.get("engine"):
        lines += ["engine    ASR alone on the corpus clips, all submitted at once"]
        lines += _engine_lines(fig["engine"])
    if fig.get("pipeline"):
        p = fig["pipeline"]
        lines += [
            f"pipeline  real-time calls, stagger {p['stagger_s']} s; latency (s) = end of speech"
            f" -> segment in the DB; pass = p95 <= {p['slo_s']:g} s, nothing shed, every call",
            f"          completed, last transcript <= {DRAIN_LIMIT_S:g} s after the streams "
            "end, live WER/CER <= offline + 1 point",
            "          late = caught up from the catch-up lane; defer = audio released to be "
            "re-read from the recording; fb = short-window decodes redone on 30 s;",
            "          cpu% of one core: loop = event-loop thread, thr = the server's other "
            "threads (DNSMOS, storage), dns = DNSMOS's part of thr, asr = ASR worker processes;"
            " RSS = peak;",
            "          off = faster-whisper offline full-window greedy on the same turns",
        ]
        lines += _level_lines(p["levels"])
        lines += _compare_lines(fig["comparison"])
    if "soak" in fig:
        k = fig["soak"]
        (s0, s1), (w0, w1) = k["rss_server_mb"], k["rss_workers_mb"]
        lines.append(
            f"soak      {SOAK_CALLS} calls x {k['rounds']} rounds over {k['minutes']:g} min: "
            f"RSS server {s0:.0f} -> {s1:.0f} MB ({s1 - s0:+.0f}), workers {w0:.0f} -> "
            f"{w1:.0f} MB ({w1 - w0:+.0f})"
        )
    lines.append(f"elapsed   {fig['elapsed_s'] / 60:.1f} min")
    return "\n".join(lines)


def _compare_lines(c: dict[str, Any]) -> list[str]:
    lines = [
        f"capacity  {c['capacity_p95_1_5s']} calls at p95 <= {LATENCY_SLO_S:g} s, "
        f"{c['capacity_p95_1s']} at p95 <= {STRICT_SLO_S:g} s (levels run; nothing shed, "
        f"accuracy kept); a call sends {c['speech_s_per_call_s']:.2f} s of utterance audio "
        f"({c['utterances_per_call_s']:.3f} utterances) to ASR per second"
    ]
    if "engine_limited_calls" in c:
        lines.append(
            f"          engine alone allows {c['engine_limited_calls']:.1f} calls by audio "
            f"({c['engine_limited_calls_by_utterance_count']:.1f} by utterance count); "
            f"pipeline / engine = {c['pipeline_vs_engine']:.0%} (goal >= 80 %)"
        )
    if "one_call" in c:
        one = c["one_call"]
        lines.append(
            f"          even one call misses the bound: latency p50 {one['p50_s']:.2f} s = ASR "
            f"{one['asr_p50_s']:.2f} s + rest {one['rest_p50_s']:.2f} s (VAD end silence, "
            f"storage batching, {POLL_S:g} s polling); --slo S judges against another bound"
        )
    return lines


# -- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"engine on {QUICK_CLIPS} clips, pipeline levels 1 and 2",
    )
    p.add_argument("--levels", help="comma-separated pipeline levels (no search), e.g. 1,2,3")
    p.add_argument("--max-level", type=int, default=64, help="stop doubling here (default 64)")
    p.add_argument("--stagger", type=float, default=0.3, help="seconds between call starts")
    p.add_argument(
        "--slo",
        type=float,
        default=LATENCY_SLO_S,
        help=f"latency p95 a level must meet, seconds (default {LATENCY_SLO_S:g})",
    )
    p.add_argument("--skip-engine", action="store_true", help="pipeline part only")
    p.add_argument("--skip-pipeline", action="store_true", help="engine part only")
    p.add_argument("--keep", action="store_true", help="keep the server's data directory")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    p.add_argument(
        "--check-record",
        type=Path,
        nargs="?",
        const=RECORD_PATH,
        metavar="PATH",
        help="compare the capacity found with the record (default docs/capacity-record.json): "
        "exit 3 when it is more than 10 %% below, 4 when not comparable (RELIABILITY.md L2)",
    )
    p.add_argument(
        "--record",
        type=Path,
        nargs="?",
        const=RECORD_PATH,
        metavar="PATH",
        help="write the capacity found as the record (default docs/capacity-record.json)",
    )
    p.add_argument(
        "--soak",
        type=float,
        nargs="?",
        const=30.0,
        metavar="MIN",
        help=f"{SOAK_CALLS} calls at a time for MIN minutes (default 30): RSS growth",
    )
    args = p.parse_args(argv)
    try:
        args.level_list = [int(x) for x in args.levels.split(",")] if args.levels else None
    except ValueError:
        p.error(f"--levels must be comma-separated integers, got {args.levels!r}")
    if args.level_list and min(args.level_list) < 1:
        p.error("--levels must all be >= 1")
    if args.quick and args.level_list is None:
        args.level_list = list(QUICK_LEVELS)
    if args.soak:
        args.skip_engine = True
    if (args.check_record or args.record) and (args.level_list or args.soak or args.skip_pipeline):
        p.error("--check-record and --record need the level search: no --levels/--quick/--soak")
    return args


def bench_env() -> dict[str, str]:
    """The environment for this process and the server: offline, shared model cache."""
    env = dict(os.environ)
    env.setdefault("CALLWATCH_ASR__CACHE_DIR", str(MODEL_CACHE))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.update({"CALLWATCH_LOG_FORMAT": "text", "PYTHONUNBUFFERED": "1"})
    return env


def run_engine(settings: Settings, config: EngineConfig, quick: bool) -> dict[str, Any]:
    clips = load_corpus(QUICK_CLIPS if quick else None)
    audio_s = sum(c.seconds for c in clips)
    progress(f"[engine] {len(clips)} clips, {audio_s:.1f} s of audio, model {config.model}")
    pool = asyncio.run(bench_pool(settings, clips))
    progress(f"[engine] pool: {pool.xrt:.2f}x real time")
    single = bench_single(config, clips)
    progress(f"[engine] single: {single.xrt:.2f}x real time")
    return {
        "pool": asdict(pool),
        "single": asdict(single),
        "second_worker_gain": pool.xrt / single.xrt,
    }


def run_pipeline(
    args: argparse.Namespace, settings: Settings, env: dict[str, str]
) -> list[LevelResult]:
    workdir = Path(tempfile.mkdtemp(prefix="callwatch-bench-"))
    server = Server(workdir, env)
    progress(f"[pipeline] starting callwatch serve (data in {workdir})")
    try:
        server.start()
        pid = server.proc.pid if server.proc else "?"
        progress(f"[pipeline] server pid {pid} listening on {server.url}")
        return asyncio.run(bench_pipeline(server, settings, args))
    finally:
        server.stop()
        if args.keep:
            progress(f"[pipeline] kept {workdir} (server log: {server.log_path})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = bench_env()
    os.environ.update({k: env[k] for k in ("CALLWATCH_ASR__CACHE_DIR", "HF_HUB_OFFLINE")})
    settings = load_settings(env=env)
    config = EngineConfig.from_settings(settings.asr, settings.model_cache_dir)
    load_start = " ".join(f"{x:.2f}" for x in os.getloadavg())
    parts = [
        "engine only" if args.skip_pipeline else "",
        "pipeline only" if args.skip_engine else "",
        f"levels {args.levels}" if args.levels else "",
    ]
    mode = ", ".join(["quick" if args.quick else "full", *filter(None, parts)])
    fig: dict[str, Any] = {"mode": mode, "settings": settings_figures(settings, config)}
    pool = None
    if not args.skip_engine:
        fig["engine"] = run_engine(settings, config, args.quick)
        pool = EngineRun(**fig["engine"]["pool"])
    if not args.skip_pipeline:
        levels = run_pipeline(args, settings, env)
        fig["pipeline"] = {
            "stagger_s": args.stagger,
            "slo_s": args.slo,
            "levels": [asdict(lv) for lv in levels],
        }
        fig["comparison"] = compare(pool, levels)
        if args.soak:
            fig["soak"] = {
                "minutes": args.soak,
                "rounds": len(levels),
                "rss_server_mb": [levels[0].rss_server_mb, levels[-1].rss_server_mb],
                "rss_workers_mb": [levels[0].rss_workers_mb, levels[-1].rss_workers_mb],
            }
    fig["host"] = {
        "cores": os.cpu_count(),
        "load_start": load_start,
        "load_end": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    fig["elapsed_s"] = time.monotonic() - STARTED
    print(render_report(fig), flush=True)
    if args.json:
        args.json.write_text(json.dumps(fig, indent=1, default=str) + "\n", encoding="utf-8")
        progress(f"figures written to {args.json}")
    if args.check_record or args.record:
        return against_record(args, capacity(levels), load_start)
    return 0


def against_record(args: argparse.Namespace, found: int, load_start: str) -> int:
    """The L2 regression check (`--check-record`) and `--record`: scripts/bench_record.py."""
    if args.record:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, text=True,
                              capture_output=True, check=False).stdout.strip()  # fmt: skip
        record = bench_record.CapacityRecord(
            calls=found, slo_s=args.slo, cores=os.cpu_count() or 0, commit=head or "unknown",
            date=time.strftime("%Y-%m-%d"), note=f"load average at the start {load_start}",
        )  # fmt: skip
        bench_record.write_record(args.record, record)
        progress(f"capacity of record: {found} calls at p95 <= {args.slo:g} s -> {args.record}")
        return 0
    try:
        record = bench_record.load_record(args.check_record)
    except bench_record.RecordError as exc:
        progress(f"error: {exc}")
        return 4
    verdict = bench_record.judge(record, found, slo_s=args.slo, cores=os.cpu_count())
    print(verdict.message, flush=True)
    return verdict.exit_code


if __name__ == "__main__":
    sys.exit(main())
