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
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import bench_record
from bench_engine import EngineRun, bench_pool, bench_single, load_corpus
from bench_levels import SOAK_CALLS, DbWatch, LevelResult, Plan, Server, run_level
from bench_live import OfflineBaseline
from bench_report import LATENCY_SLO_S, capacity, compare, render_report, settings_figures

from asr.engine import EngineConfig
from config.settings import Settings, load_settings
from ivr_sim.harness import MODEL_CACHE, REPO_ROOT, elapsed_s, progress
from ivr_sim.script import builtin_scripts, load_script, render

QUICK_CLIPS = 20
QUICK_LEVELS = (1, 2)
RECORD_PATH = REPO_ROOT / "docs" / "capacity-record.json"  # RELIABILITY.md L2


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
    fig["elapsed_s"] = elapsed_s()
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
