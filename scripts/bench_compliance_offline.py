"""scripts/bench-compliance, offline and text modes: segmenter + ASR without a server,
or the exact, Whisper-heard and error-injected lines without audio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from dataclasses import astuple
from typing import Any

import numpy as np
from bench_compliance_core import (
    CER_LEVELS,
    SPEECH_DIR,
    Segment,
    check,
    cost_figures,
    cost_line,
    render_plan,
    segment,
    side_by_side,
    tally_figures,
)
from heldout_audio import Heard, asr_report, is_heldout

from asr.pool import AsrPool
from asr.types import AsrRequest, AsrResult
from config.settings import Settings, load_settings
from evaluation.callplans import Tally
from evaluation.evalset import CallPlan, PlannedTurn
from evaluation.noise import inject_errors
from ivr_sim.harness import progress
from monitor.core.events import UtteranceEnded
from monitor.qa import (
    ScriptBook,
)


# -- offline ASR ---------------------------------------------------------------------------
def _whole_clip(plan: CallPlan, party: str, start_ms: int, end_ms: int) -> PlannedTurn | None:
    """The turn whose clip the utterance is, when the VAD cut it around that clip alone (give
    or take 400 ms); None for anything else (a clip split in two, overlapping speech)."""
    cursor, found = 0.0, []
    for turn in plan.turns:
        start = max(0.0, cursor + turn.pause_s)
        end = start + turn.line.seconds
        cursor = max(cursor, end)
        if turn.party == party and start * 1000 < end_ms and end * 1000 > start_ms:
            found.append((turn, start, end))
    if len(found) != 1:
        return None
    turn, start, end = found[0]
    if start_ms > start * 1000 + 400 or end_ms < end * 1000 - 400:
        return None  # only part of the clip
    return turn


def heldout_heard(plans: list[CallPlan], per_call: list[list[Segment]]) -> list[Heard]:
    """What the ASR made of each held-out clip, from the segments that were one whole clip."""
    heard = []
    for plan, segments in zip(plans, per_call, strict=True):
        for s in segments:
            turn = _whole_clip(plan, s.party, s.start_ms, s.end_ms)
            if turn is not None and is_heldout(turn.line):
                line = turn.line
                heard.append(Heard(line.file, line.language, line.text, s.text, s.language))
    return heard


def print_heard(args: argparse.Namespace, heard: list[Heard], figures: dict[str, Any]) -> None:
    if heard:
        # The held-out clips' texts are not shown unless asked (--errors): they stay unseen.
        report, figures["heldout_asr"] = asr_report(heard, worst=3 if args.errors else 0)
        print(f"\n== how the ASR heard the held-out clips ({args.voice} voices) ==\n{report}")


def _cache_key(
    plan: CallPlan, u: UtteranceEnded, rate: int, language: str | None
) -> tuple[str, str, int, str | None] | None:
    """Utterances that are one whole clip transcribe the same in every call they occur in
    (the audio differs only in the silence padding): they share one key. Anything else gets
    no key and is transcribed on its own."""
    turn = None if u.capped else _whole_clip(plan, u.party.value, u.start_ms, u.end_ms)
    if turn is None:
        return None
    return (turn.party, f"{turn.line.corpus}:{turn.line.file}", rate, language)


async def transcribe_all(
    settings: Settings, utterances: list[tuple[int, UtteranceEnded]], languages: list[str | None]
) -> list[AsrResult]:
    async with AsrPool(settings.asr, settings.model_cache_dir) as pool:
        batch = max(1, settings.asr.batch_size)
        done = 0
        every = max(1, len(utterances) // 10)

        async def run(chunk: list[AsrRequest]) -> list[AsrResult]:
            nonlocal done
            results = await pool.transcribe_batch(chunk)
            done += len(chunk)
            if done // every != (done - len(chunk)) // every:
                progress(f"[asr] {done}/{len(utterances)} utterances")
            return results

        requests = [
            AsrRequest(u.audio.astype(np.float32) / 32768.0, language=lang)
            for (_, u), lang in zip(utterances, languages, strict=True)
        ]
        chunks = [requests[i : i + batch] for i in range(0, len(requests), batch)]
        nested = await asyncio.gather(*(run(c) for c in chunks))
    return [r for chunk in nested for r in chunk]


def bench_offline(
    args: argparse.Namespace, book: ScriptBook, plans: list[CallPlan]
) -> dict[str, Any]:
    settings = load_settings()
    progress(f"rendering and segmenting {len(plans)} calls at {args.rate} Hz")
    utterances: list[tuple[int, UtteranceEnded]] = []
    durations: list[int] = []
    audio_s = 0.0
    t0 = time.perf_counter()
    for i, plan in enumerate(plans):
        call = render_plan(plan, args.tts_dir, SPEECH_DIR, args.rate)
        found, duration = segment(call, settings)
        utterances.extend((i, u) for u in found)
        durations.append(duration)
        audio_s += sum((u.end_sample - u.start_sample) / 16000 for u in found)
    prep_s = time.perf_counter() - t0
    progress(
        f"{len(utterances)} utterances, {audio_s:.0f} s of speech ({prep_s:.1f} s); "
        f"transcribing with {settings.asr.model} (language {args.language})"
    )
    languages = [
        plans[i].language
        if args.language == "call"
        else (None if args.language == "auto" else args.language)
        for i, _ in utterances
    ]
    keys = [
        None if args.no_cache else _cache_key(plans[i], u, args.rate, lang)
        for (i, u), lang in zip(utterances, languages, strict=True)
    ]
    first: dict[object, int] = {}
    todo = []
    for n, key in enumerate(keys):
        if key is None or key not in first:
            if key is not None:
                first[key] = n
            todo.append(n)
    progress(
        f"{len(todo)} distinct utterances to transcribe ({len(utterances) - len(todo)} "
        f"are the same clip cut the same way in another call; --no-cache for all)"
    )
    t0 = time.perf_counter()
    fresh = asyncio.run(
        transcribe_all(settings, [utterances[n] for n in todo], [languages[n] for n in todo])
    )
    asr_s = time.perf_counter() - t0
    by_index = dict(zip(todo, fresh, strict=True))
    results = [by_index[n] if n in by_index else by_index[first[key]] for n, key in enumerate(keys)]
    audio_s = sum(
        (utterances[n][1].end_sample - utterances[n][1].start_sample) / 16000 for n in todo
    )
    per_call: list[list[Segment]] = [[] for _ in plans]
    for (i, u), r in zip(utterances, results, strict=True):
        if r.text:
            per_call[i].append(Segment(u.party.value, u.start_ms, u.end_ms, r.text, r.language))
    if args.save_transcripts:
        args.save_transcripts.write_text(
            json.dumps(
                {
                    "calls": args.calls,
                    "seed": args.seed,
                    "rate": args.rate,
                    "language": args.language,
                    "durations": durations,
                    "segments": [[list(astuple(s)) for s in segs] for segs in per_call],
                },
                ensure_ascii=False,
            )
        )
        progress(f"transcripts written to {args.save_transcripts}")
    figures: dict[str, Any] = {}
    print_heard(args, heldout_heard(plans, per_call), figures)
    return score_offline(
        args,
        book,
        plans,
        per_call,
        durations,
        figures
        | {
            "calls": len(plans),
            "utterances": len(utterances),
            "transcribed": len(todo),
            "speech_s": round(audio_s, 1),
            "asr_wall_s": round(asr_s, 1),
            "asr_xrt": round(audio_s / asr_s, 2),
            "render_segment_s": round(prep_s, 1),
        },
    )


def rescore(args: argparse.Namespace, book: ScriptBook, plans: list[CallPlan]) -> dict[str, Any]:
    """Score transcripts saved by an earlier run (`--save-transcripts`): the checker and the
    scripts can be tuned without transcribing again."""
    saved = json.loads(args.load_transcripts.read_text())
    if (saved["calls"], saved["seed"]) != (args.calls, args.seed):
        raise SystemExit(
            f"{args.load_transcripts} holds --calls {saved['calls']} --seed "
            f"{saved['seed']}; pass the same"
        )
    per_call = [[Segment(*s) for s in segs] for segs in saved["segments"]]
    args.rate, args.language = saved["rate"], saved["language"]
    figures: dict[str, Any] = {"calls": len(plans)}
    print_heard(args, heldout_heard(plans, per_call), figures)
    return score_offline(args, book, plans, per_call, saved["durations"], figures)


def score_offline(
    args: argparse.Namespace,
    book: ScriptBook,
    plans: list[CallPlan],
    per_call: list[list[Segment]],
    durations: list[int],
    figures: dict[str, Any],
) -> dict[str, Any]:
    settings = load_settings()
    lexical, tally, timings = Tally(), Tally(), list[float]()
    old_cost: tuple[list[float], list[float]] = ([], [])
    new_cost: tuple[list[float], list[float]] = (timings, [])
    for plan, segments, duration in zip(plans, per_call, durations, strict=True):
        seen = len(old_cost[0])
        lexical.score(plan, check(book, plan, segments, duration, old_cost[0], semantic=False))
        old_cost[1].append(sum(old_cost[0][seen:]))
        seen = len(timings)
        tally.score(plan, check(book, plan, segments, duration, timings))
        new_cost[1].append(sum(timings[seen:]))
    print(
        f"\n== offline: segmenter + ASR ({settings.asr.model}, language {args.language}) + "
        f"checker, {len(plans)} calls at {args.rate} Hz"
        f"{f' from the held-out lines ({args.voice} voices)' if args.heldout else ''}"
        ": lexical | semantic =="
    )
    print(side_by_side(lexical, tally))
    print(cost_line(old_cost, new_cost))
    figures["checker_cost_ms"] = cost_figures(old_cost, new_cost)
    if args.errors:
        print("\n".join(tally.errors))
    figures["checker_ms_p50"] = round(1000 * statistics.median(timings), 3)
    figures["checker_ms_max"] = round(1000 * max(timings), 3)
    if "asr_wall_s" in figures:
        print(
            f"\n{figures['transcribed']} of {figures['utterances']} utterances transcribed "
            f"(the rest repeat); ASR {figures['speech_s']:.0f} s of speech in "
            f"{figures['asr_wall_s']:.0f} s ({figures['asr_xrt']:.1f}x real time)"
        )
    print(
        f"checker per segment: p50 {figures['checker_ms_p50']} ms, "
        f"max {figures['checker_ms_max']} ms"
    )
    return {
        "offline": tally_figures(tally),
        "offline_lexical": tally_figures(lexical),
        "timing": figures,
    }


# -- text level ----------------------------------------------------------------------------
def bench_text(
    args: argparse.Namespace,
    book: ScriptBook,
    plan_sets: list[tuple[int, list[CallPlan]]],
    label: str = "",
) -> dict[str, Any]:
    """Every variant over every set of calls, pooled: (seed, plans) per set, the seed also
    drives that set's injected errors. Each variant is scored twice, by the phrases alone
    (the lexical checker) and with the scripts' intents, printed side by side with the
    checker's CPU per segment and per call."""
    out: dict[str, Any] = {}
    variants: list[tuple[str, float | None]] = [("exact", None), ("asr_text", None)]
    variants += [(f"cer{int(c * 100)}", c) for c in CER_LEVELS]
    calls = sum(len(plans) for _, plans in plan_sets)
    for name, cer in variants:
        tallies: dict[bool, Tally] = {}
        cost: dict[bool, tuple[list[float], list[float]]] = {}
        for semantic in (False, True):
            tally, timings, per_call = Tally(), list[float](), list[float]()
            for seed, plans in plan_sets:
                rng = random.Random(seed)  # the same injected errors for both checkers
                for plan in plans:
                    segments = []
                    for party, start, end, text, asr_text in plan.timeline():
                        if name == "asr_text":
                            text = asr_text
                        elif cer is not None:
                            text = inject_errors(text, plan.language, cer, rng)
                        segments.append(Segment(party, start, end, text, plan.language))
                    duration = max(s.end_ms for s in segments) + 600
                    seen = len(timings)
                    result = check(book, plan, segments, duration, timings, semantic)
                    tally.score(plan, result, name)
                    per_call.append(sum(timings[seen:]))
            tallies[semantic], cost[semantic] = tally, (timings, per_call)
        print(f"\n== text level{label}: {name} ({calls} calls): lexical | semantic ==")
        print(side_by_side(tallies[False], tallies[True]))
        print(cost_line(cost[False], cost[True]))
        if args.errors:
            print("\n".join(tallies[True].errors))
        out[name] = {
            "lexical": tally_figures(tallies[False]),
            "semantic": tally_figures(tallies[True]),
            "cost_ms": cost_figures(cost[False], cost[True]),
        }
    return out
