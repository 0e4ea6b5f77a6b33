"""scripts/bench-compliance, live mode: calls streamed to a real `callwatch serve` (started
here or running), their stored results scored by the offline checker's code.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench_compliance_core import POLL_S, SPEECH_DIR, check, render_plan, tally_figures
from bench_compliance_outcomes import (
    LiveOutcome,
    collect,
    load_outcomes,
    outcome_to_json,
    result_from_document,
    script_language,
    verdict,
)
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from config.settings import load_settings
from evaluation.callplans import Tally
from evaluation.evalset import CallPlan
from ivr_sim.harness import ServerProcess, progress, server_env, session_cpu_s
from ivr_sim.stream import call_metadata, stream_call
from monitor.qa import (
    ScriptBook,
)
from storage.repository import Repository


class LiveRun:
    """The server (started here, or a running one) and the calls streamed to it."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.server: ServerProcess | None = None
        self.workdir: Path | None = None
        if args.live_url:
            self.url = args.live_url
            self.db_path = args.data_dir / "callwatch.db"
        else:
            self.workdir = Path(tempfile.mkdtemp(prefix="callwatch-bench-compliance-"))
            # Calls stream flat out (pace 0 by default): the gateway's flood guard
            # (gateway.max_audio_rate) would cut them off as faster than real time.
            env: dict[str, str] = {"CALLWATCH_GATEWAY__MAX_AUDIO_RATE": "0"}
            if args.language in ("zh", "en"):
                env["CALLWATCH_ASR__LANGUAGE"] = args.language
            if args.scripts is not None:
                env["CALLWATCH_COMPLIANCE__SCRIPTS_DIR"] = str(args.scripts.resolve())
            self.server = ServerProcess(
                data_dir=self.workdir / "data",
                env=server_env(**env),
                log_path=self.workdir / "server.log",
            )
            progress(f"[live] starting callwatch serve (data in {self.workdir})")
            self.server.start()
            self.url = self.server.url
            self.db_path = self.server.db_path
            pid = self.server.proc.pid if self.server.proc else "?"
            progress(f"[live] server pid {pid} listening on {self.url}")
        if not self.db_path.exists():
            raise SystemExit(f"{self.db_path} not found: --data-dir must be the server's")
        self.repo = Repository.from_url(f"sqlite:///{self.db_path}")
        self.cpu: dict[str, float] = {}
        self._cpu0: dict[int, float] | None = None

    def cpu_start(self) -> None:
        if self.server is not None and self.server.proc is not None:
            self._cpu0 = session_cpu_s(self.server.proc.pid)

    def cpu_stop(self) -> None:
        """CPU seconds the server's main process and its other processes (ASR workers) used
        while the calls streamed (only for a server started here)."""
        if self.server is None or self.server.proc is None or self._cpu0 is None:
            return
        pid = self.server.proc.pid
        used = {p: s - self._cpu0.get(p, 0.0) for p, s in session_cpu_s(pid).items()}
        self.cpu = {
            "server_main_s": round(used.pop(pid, 0.0), 1),
            "server_workers_s": round(sum(used.values()), 1),
        }

    def close(self) -> None:
        self.repo.close()
        if self.server is not None:
            code = self.server.stop()
            if code not in (0, None):
                progress(f"[live] server exited {code}; log: {self.server.log_path}")
        if self.workdir is not None:
            if self.args.keep:
                progress(f"[live] kept {self.workdir}")
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def _server_gone(self) -> bool:
        proc = self.server.proc if self.server is not None else None
        return proc is not None and proc.poll() is not None

    async def one(self, plan: CallPlan, tag: str) -> LiveOutcome:
        out = LiveOutcome(plan, f"{plan.name}-{tag}")
        started = time.monotonic()
        try:
            await self._stream_and_collect(out)
        finally:
            out.wall_s = round(time.monotonic() - started, 1)
        return out

    async def _stream_and_collect(self, out: LiveOutcome) -> None:
        args, plan = self.args, out.plan
        call = await asyncio.to_thread(render_plan, plan, args.tts_dir, SPEECH_DIR, args.rate)
        out.audio_s = call.duration_s
        try:
            await stream_call(
                self.url,
                call,
                pace=args.pace,
                metadata=call_metadata(call, {"callid": out.external_id}),
            )
        except (OSError, ConnectionClosed, InvalidHandshake) as exc:
            out.error = f"stream failed: {exc!r}"
            return
        deadline = time.monotonic() + args.call_timeout
        while not await asyncio.to_thread(collect, self.repo, out):
            if self._server_gone():
                raise RuntimeError(
                    f"the server exited; see {self.server.log_path}"
                    if self.server
                    else "the server exited"
                )
            if time.monotonic() > deadline:
                out.error = f"not finalised within {args.call_timeout:.0f} s"
                return
            await asyncio.sleep(POLL_S)

    async def stream_all(self, plans: list[CallPlan]) -> list[LiveOutcome]:
        slots = asyncio.Semaphore(self.args.concurrency)
        tag = uuid.uuid4().hex[:8]  # fresh switch ids: a running server may have older runs
        done = 0

        async def run(plan: CallPlan) -> LiveOutcome:
            nonlocal done
            async with slots:  # a slot is held until the call is finalised: bounded ASR queue
                out = await self.one(plan, tag)
            done += 1
            if self.args.outcomes is not None:
                # One line per call as soon as it is scored: an interrupted run keeps its
                # calls, and the next run with the same file streams only the rest.
                with self.args.outcomes.open("a", encoding="utf-8") as fh:
                    fh.write(json.dumps(outcome_to_json(out), ensure_ascii=False) + "\n")
            if out.error:
                progress(f"[live] {out.external_id}: {out.error}")
            progress(f"[live] {done}/{len(plans)} calls")
            return out

        return list(await asyncio.gather(*(run(p) for p in plans)))


def bench_live(args: argparse.Namespace, book: ScriptBook, plans: list[CallPlan]) -> dict[str, Any]:
    """Stream the labelled calls through a real gateway and ASR, a few at a time, and score
    the compliance result each call's server stored, exactly as the offline checker's."""
    earlier: dict[str, LiveOutcome] = {}
    if args.outcomes is not None:
        earlier = {k: o for k, o in load_outcomes(args.outcomes, plans).items() if not o.error}
        if earlier:
            progress(
                f"[live] {len(earlier)} calls already in {args.outcomes}: streaming the "
                f"other {len(plans) - len(earlier)}"
            )
    todo = [p for p in plans if p.name not in earlier]
    if not todo:
        return score_live(
            args, book, list(earlier.values()), 0.0, "(earlier runs)", {}, earlier=len(earlier)
        )
    live = LiveRun(args)
    plans = todo
    audio = sum(p.timeline()[-1][2] for p in plans) / 1000
    progress(
        f"[live] streaming {len(plans)} calls (~{audio:.0f} s of audio) at {args.rate} Hz, "
        f"{args.concurrency} at a time, pace {args.pace or 'flat out'}"
    )
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    live.cpu_start()
    try:
        outcomes = asyncio.run(live.stream_all(plans))
        live.cpu_stop()
    finally:
        live.close()
    wall_s = time.monotonic() - t0
    host = {
        "cores": os.cpu_count(),
        "load_start": round(load, 2),
        "load_end": round(os.getloadavg()[0], 2),
        **live.cpu,
    }
    return score_live(
        args, book, list(earlier.values()) + outcomes, wall_s, live.url, host, earlier=len(earlier)
    )


def score_live(
    args: argparse.Namespace,
    book: ScriptBook,
    outcomes: list[LiveOutcome],
    wall_s: float,
    url: str,
    host: dict[str, Any],
    earlier: int = 0,
) -> dict[str, Any]:
    """Score the calls; the first `earlier` of `outcomes` came from earlier runs (the
    `--outcomes` file) and count in the tables but not in this run's wall time."""
    tally, rescored = Tally(), Tally()
    timings: list[float] = []
    failed = [o for o in outcomes if o.error]
    done = [o for o in outcomes if not o.error]
    mismatched, missing, disagree = [], [], []
    for o in done:
        result = result_from_document(o.document)
        tally.score(o.plan, result, o.external_id)
        if o.document is None:
            missing.append(o.external_id)
        elif (lang := script_language(book, result.script)) != o.plan.language:
            mismatched.append(f"{o.external_id}: script {result.script} ({lang})")
        # The offline checker on the very transcripts the server stored, with the script of
        # the call's own language: tells the live path's faults (script choice, watermark,
        # segments fed out of order) from ASR's.
        offline = check(book, o.plan, o.segments, o.duration_ms, timings)
        rescored.score(o.plan, offline, o.external_id)
        if verdict(offline) != verdict(result):
            live_v, off_v = verdict(result), verdict(offline)
            diff = [
                f"{name} live {sorted(map(str, a - b))} offline {sorted(map(str, b - a))}"
                for name, a, b in zip(("stages", "forbidden", "order"), live_v, off_v, strict=True)
                if a != b
            ]
            disagree.append(f"{o.external_id} [{o.plan.variant}] " + "; ".join(diff))
    settings = load_settings()
    language = args.language if args.live_url is None else "the server's"
    print(
        f"\n== live: gateway + segmenter + ASR ({settings.asr.model}, language {language}) + "
        f"checker, {len(done)} calls at {args.rate} Hz via {url} =="
    )
    print(tally.table())
    if args.errors and tally.errors:
        print("\n".join(tally.errors))
    near = {
        kind: sum(f"{kind}=near_miss" in o.plan.variant for o in done)
        for kind in ("greeting", "closing")
    }
    print(
        f"near misses in the set (must not count): greeting {near['greeting']} calls, "
        f"closing {near['closing']} calls"
    )
    speech = sum(o.audio_s for o in done)
    statuses: dict[str, int] = {}
    for o in done:
        statuses[o.status] = statuses.get(o.status, 0) + 1
    shed = sum(o.shed for o in done)
    late = sum(o.late for o in done)
    langs = {lang: sum(o.plan.language == lang for o in done) for lang in ("en", "zh")}
    fresh = [o for o in outcomes[earlier:] if not o.error]
    print(
        f"\nthis run: wall {wall_s:.0f} s for {len(fresh)} calls "
        f"({sum(o.audio_s for o in fresh):.0f} s of audio, "
        f"{sum(o.audio_s for o in fresh) / max(wall_s, 1e-9):.1f}x real time); "
        f"all runs: {len(outcomes)} calls ({speech:.0f} s of audio), "
        f"{args.concurrency} at a time, pace "
        f"{args.pace or 'flat out'}; {langs['en']} en + {langs['zh']} zh scored; statuses "
        + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
    )
    if "server_main_s" in host:
        print(
            f"server CPU while streaming: main process {host['server_main_s']:.0f} s, "
            f"other processes (ASR workers) {host['server_workers_s']:.0f} s; "
            f"{host['cores']} cores, load {host['load_start']} -> {host['load_end']}"
        )
    print(
        f"utterances {sum(o.utterances for o in done)}, shed {shed} "
        f"(in {sum(o.shed > 0 for o in done)} calls), transcribed after finalising {late}"
    )
    if failed:
        print(
            f"{len(failed)} calls not scored: "
            + "; ".join(f"{o.external_id} {o.error}" for o in failed)
        )
    if missing:
        print(
            f"{len(missing)} calls without a stored compliance result (scored as nothing "
            f"heard): {', '.join(missing)}"
        )
    print(f"calls whose script is not in their language: {len(mismatched)}")
    for line in mismatched:
        print(f"  {line}")
    print(
        f"offline checker on the stored transcripts (the call's own language script) "
        f"agrees with the stored result on {len(done) - len(disagree)}/{len(done)} calls"
    )
    for line in disagree if args.errors else disagree[:10]:
        print(f"  {line}")
    if len(disagree) > 10 and not args.errors:
        print(f"  ... {len(disagree) - 10} more (--errors for all)")
    return {
        "live": tally_figures(tally),
        "stored_transcripts_offline_checker": tally_figures(rescored),
        "timing": {
            "wall_s": round(wall_s, 1),
            "calls": len(outcomes),
            "scored": len(done),
            "audio_s": round(speech, 1),
            "concurrency": args.concurrency,
            "pace": args.pace,
            "statuses": statuses,
            "shed": shed,
            "late": late,
            "host": host,
            "near_miss_calls": near,
        },
        "not_scored": [f"{o.external_id}: {o.error}" for o in failed],
        "no_result": missing,
        "script_mismatch": mismatched,
        "disagreements": disagree,
    }
