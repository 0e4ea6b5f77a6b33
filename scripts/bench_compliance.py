"""callwatch compliance benchmark: precision and recall of the shipped scripts, per stage and
language, on labelled simulated calls.

    scripts/bench-compliance                 # 200 calls, offline through segmenter + ASR
    scripts/bench-compliance --calls 40      # fewer calls (half Mandarin, half English)
    scripts/bench-compliance --text          # text level only: exact, Whisper's, injected CER
    scripts/bench-compliance --live ws://127.0.0.1:8765/   # through a running server (TODO)
    scripts/bench-compliance --errors        # also list every false positive / negative

The calls (`monitor.qa.evalset.build_plans`) are assembled from the synthetic agent and
customer lines in shared/data/speech/tts (greetings, verification, hold notices, closings,
paraphrases, near misses that must not count, forbidden lines) and real read speech from
tests/data/speech, rendered by `ivr_sim` at 8 kHz (a telephone call) or `--rate 16000`.

Offline mode measures exactly the live logic without a server: each call's PCM goes through
`CallSession` (the gateway's segmenter) in 20 ms chunks, every utterance through an `AsrPool`
built from the default settings (the server's models, language `auto` unless `--language`),
and the transcripts, in media-time order with the watermark advanced after each, through
`ComplianceChecker` for the script `ScriptBook.select` picks. Text mode skips audio: the same
calls' exact lines, faster-whisper's `asr_text` of each line, and the exact lines with
injected ASR errors at 5, 10, 15 and 20 % CER (`monitor.qa.noise`).

Progress goes to stderr; the tables go to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import time
from dataclasses import astuple, dataclass
from pathlib import Path

import numpy as np

from asr.pool import AsrPool
from asr.types import AsrRequest, AsrResult
from config.settings import Settings, load_settings
from ivr_sim.script import CallScript, RenderedCall, Turn, render
from monitor.core.events import Party, UtteranceEnded
from monitor.core.metadata import CallMetadata
from monitor.core.session import CallSession
from monitor.qa import ComplianceChecker, ComplianceResult, ScriptBook, load_compliance_scripts
from monitor.qa.evalset import CallPlan, Tally, build_plans, load_lines
from monitor.qa.noise import inject_errors

REPO_ROOT = Path(__file__).resolve().parents[1]
TTS_DIR = REPO_ROOT.parent / "shared" / "data" / "speech" / "tts"
SPEECH_DIR = REPO_ROOT / "tests" / "data" / "speech"
CHUNK_MS = 20
CER_LEVELS = (0.05, 0.10, 0.15, 0.20)
STARTED = time.monotonic()


def progress(msg: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)


# -- building and rendering calls ----------------------------------------------------------
def render_plan(plan: CallPlan, tts_dir: Path, speech_dir: Path, rate: int) -> RenderedCall:
    """A plan as a two-channel call; clip paths are absolute, so they may live anywhere."""
    roots = {"tts": tts_dir, "speech": speech_dir}
    turns = tuple(
        Turn(t.party, str(roots[t.line.corpus] / t.line.file), t.pause_s) for t in plan.turns
    )
    script = CallScript(plan.name, rate, turns, dict(plan.metadata))
    return render(script, data_root=speech_dir)


def segment(call: RenderedCall, settings: Settings) -> tuple[list[UtteranceEnded], int]:
    """The gateway's segmenter over the call's PCM in 20 ms chunks: (utterances, duration)."""
    meta = CallMetadata(external_id=call.script.name, sample_rate=call.sample_rate, channels=2,
                        channel_of={Party.CUSTOMER: 0, Party.AGENT: 1})
    session = CallSession(meta, settings.vad)
    pcm = call.pcm()
    step = call.sample_rate * CHUNK_MS // 1000 * 4
    out: list[UtteranceEnded] = []
    for pos in range(0, len(pcm), step):
        out.extend(session.feed(pcm[pos : pos + step]))
    out.extend(session.finish())
    return out, session.duration_ms


@dataclass(frozen=True, slots=True)
class Segment:
    party: str
    start_ms: int
    end_ms: int
    text: str
    language: str


def check(book: ScriptBook, plan: CallPlan, segments: list[Segment], duration_ms: int,
          timings: list[float]) -> ComplianceResult:
    """Feed segments in the order they would arrive (by end time), advancing the watermark."""
    checker = ComplianceChecker(book.select(plan.metadata, plan.language))
    for seg in sorted(segments, key=lambda s: (s.end_ms, s.start_ms)):
        t0 = time.perf_counter()
        checker.on_segment(seg.party, seg.start_ms, seg.end_ms, seg.text, seg.language)
        checker.advance(seg.end_ms)
        timings.append(time.perf_counter() - t0)
    return checker.finish(duration_ms)


# -- offline ASR ---------------------------------------------------------------------------
def _cache_key(plan: CallPlan, u: UtteranceEnded, rate: int, language: str | None
               ) -> tuple[str, str, int, str | None] | None:
    """Utterances that are one whole clip, cut by the VAD around it alone, transcribe the
    same in every call they occur in (the audio differs only in the silence padding): they
    share one key. Anything else (a clip split in two, overlapping speech, a capped cut)
    gets no key and is transcribed on its own."""
    if u.capped:
        return None
    cursor, found = 0.0, []
    for turn in plan.turns:
        start = max(0.0, cursor + turn.pause_s)
        end = start + turn.line.seconds
        cursor = max(cursor, end)
        if turn.party == u.party.value and start * 1000 < u.end_ms and end * 1000 > u.start_ms:
            found.append((turn, start, end))
    if len(found) != 1:
        return None
    turn, start, end = found[0]
    if u.start_ms > start * 1000 + 400 or u.end_ms < end * 1000 - 400:
        return None  # only part of the clip
    return (turn.party, f"{turn.line.corpus}:{turn.line.file}", rate, language)


async def transcribe_all(settings: Settings, utterances: list[tuple[int, UtteranceEnded]],
                         languages: list[str | None]) -> list[AsrResult]:
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


def bench_offline(args: argparse.Namespace, book: ScriptBook, plans: list[CallPlan]) -> dict:
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
    progress(f"{len(utterances)} utterances, {audio_s:.0f} s of speech ({prep_s:.1f} s); "
             f"transcribing with {settings.asr.model} (language {args.language})")
    languages = [plans[i].language if args.language == "call" else
                 (None if args.language == "auto" else args.language) for i, _ in utterances]
    keys = [None if args.no_cache else _cache_key(plans[i], u, args.rate, lang)
            for (i, u), lang in zip(utterances, languages, strict=True)]
    first: dict[object, int] = {}
    todo = []
    for n, key in enumerate(keys):
        if key is None or key not in first:
            if key is not None:
                first[key] = n
            todo.append(n)
    progress(f"{len(todo)} distinct utterances to transcribe ({len(utterances) - len(todo)} "
             f"are the same clip cut the same way in another call; --no-cache for all)")
    t0 = time.perf_counter()
    fresh = asyncio.run(transcribe_all(settings, [utterances[n] for n in todo],
                                       [languages[n] for n in todo]))
    asr_s = time.perf_counter() - t0
    by_index = dict(zip(todo, fresh, strict=True))
    results = [by_index[n] if n in by_index else by_index[first[key]]
               for n, key in enumerate(keys)]
    audio_s = sum((utterances[n][1].end_sample - utterances[n][1].start_sample) / 16000
                  for n in todo)
    per_call: list[list[Segment]] = [[] for _ in plans]
    for (i, u), r in zip(utterances, results, strict=True):
        if r.text:
            per_call[i].append(Segment(u.party.value, u.start_ms, u.end_ms, r.text, r.language))
    if args.save_transcripts:
        args.save_transcripts.write_text(json.dumps({
            "calls": args.calls, "seed": args.seed, "rate": args.rate,
            "language": args.language, "durations": durations,
            "segments": [[list(astuple(s)) for s in segs] for segs in per_call],
        }, ensure_ascii=False))
        progress(f"transcripts written to {args.save_transcripts}")
    return score_offline(args, book, plans, per_call, durations, {
        "calls": len(plans), "utterances": len(utterances), "transcribed": len(todo),
        "speech_s": round(audio_s, 1), "asr_wall_s": round(asr_s, 1),
        "asr_xrt": round(audio_s / asr_s, 2), "render_segment_s": round(prep_s, 1),
    })


def rescore(args: argparse.Namespace, book: ScriptBook, plans: list[CallPlan]) -> dict:
    """Score transcripts saved by an earlier run (`--save-transcripts`): the checker and the
    scripts can be tuned without transcribing again."""
    saved = json.loads(args.load_transcripts.read_text())
    if (saved["calls"], saved["seed"]) != (args.calls, args.seed):
        raise SystemExit(f"{args.load_transcripts} holds --calls {saved['calls']} --seed "
                         f"{saved['seed']}; pass the same")
    per_call = [[Segment(*s) for s in segs] for segs in saved["segments"]]
    args.rate, args.language = saved["rate"], saved["language"]
    return score_offline(args, book, plans, per_call, saved["durations"], {"calls": len(plans)})


def score_offline(args: argparse.Namespace, book: ScriptBook, plans: list[CallPlan],
                  per_call: list[list[Segment]], durations: list[int], figures: dict) -> dict:
    settings = load_settings()
    tally, timings = Tally(), []
    for plan, segments, duration in zip(plans, per_call, durations, strict=True):
        tally.score(plan, check(book, plan, segments, duration, timings))
    print(f"\n== offline: segmenter + ASR ({settings.asr.model}, language {args.language}) + "
          f"checker, {len(plans)} calls at {args.rate} Hz ==")
    print(tally.table())
    if args.errors:
        print("\n".join(tally.errors))
    figures["checker_ms_p50"] = round(1000 * statistics.median(timings), 3)
    figures["checker_ms_max"] = round(1000 * max(timings), 3)
    if "asr_wall_s" in figures:
        print(f"\n{figures['transcribed']} of {figures['utterances']} utterances transcribed "
              f"(the rest repeat); ASR {figures['speech_s']:.0f} s of speech in "
              f"{figures['asr_wall_s']:.0f} s ({figures['asr_xrt']:.1f}x real time)")
    print(f"checker per segment: p50 {figures['checker_ms_p50']} ms, "
          f"max {figures['checker_ms_max']} ms")
    return {"offline": _figures(tally), "timing": figures}


# -- text level ----------------------------------------------------------------------------
def bench_text(args: argparse.Namespace, book: ScriptBook, plans: list[CallPlan]) -> dict:
    out = {}
    variants: list[tuple[str, float | None]] = [("exact", None), ("asr_text", None)]
    variants += [(f"cer{int(c * 100)}", c) for c in CER_LEVELS]
    for name, cer in variants:
        rng = random.Random(args.seed)
        tally, timings = Tally(), []
        for plan in plans:
            segments = []
            for party, start, end, text, asr_text in plan.timeline():
                if name == "asr_text":
                    text = asr_text
                elif cer is not None:
                    text = inject_errors(text, plan.language, cer, rng)
                segments.append(Segment(party, start, end, text, plan.language))
            duration = max(s.end_ms for s in segments) + 600
            tally.score(plan, check(book, plan, segments, duration, timings), name)
        print(f"\n== text level: {name} ==")
        print(tally.table())
        if args.errors:
            print("\n".join(tally.errors))
        out[name] = _figures(tally)
    return out


def _figures(tally: Tally) -> dict:
    return {f"{lang}/{key}": {"precision": round(tally.precision(lang, key), 3),
                              "recall": round(tally.recall(lang, key), 3), "counts": counts}
            for (lang, key), counts in sorted(tally.counts.items())}


def bench_live(args: argparse.Namespace, plans: list[CallPlan]) -> dict:
    # TODO(live): stream each rendered call with ivr_sim.stream.stream_call(args.live, call,
    # metadata=call_metadata(call, {"callid": plan.name})) and, once the server stores
    # compliance results with the call, read them back from the server's database (the
    # storage side of issue 5) and score them with Tally exactly as bench_offline does:
    # map the stored checklist rows to a ComplianceResult-like object with `.stages` (stage,
    # start_ms) , `.forbidden` (rule) and `.order_violations` (stage, expected_after).
    raise SystemExit("--live needs the stored compliance results (issue 5, storage side); "
                     "run without --live for the offline measurement")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="labelled calls (default 200)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=int, choices=(8000, 16000), default=8000)
    parser.add_argument("--language", default="auto", choices=("auto", "call", "zh", "en"),
                        help="ASR language: auto-detect (as the server), or the call's own")
    parser.add_argument("--text", action="store_true", help="text level only (no audio)")
    parser.add_argument("--live", metavar="URL", help="stream to a running server (TODO)")
    parser.add_argument("--scripts", type=Path, default=None, help="compliance scripts folder")
    parser.add_argument("--tts-dir", type=Path, default=TTS_DIR)
    parser.add_argument("--errors", action="store_true", help="list every FP and FN")
    parser.add_argument("--save-transcripts", type=Path, metavar="JSON",
                        help="keep the offline transcripts, to rescore later")
    parser.add_argument("--load-transcripts", type=Path, metavar="JSON",
                        help="score saved transcripts instead of transcribing")
    parser.add_argument("--no-cache", action="store_true",
                        help="transcribe every utterance of every call, even repeats")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.calls < 2:
        parser.error("--calls must be at least 2 (one per language)")
    manifest = args.tts_dir / "MANIFEST.tsv"
    if not manifest.exists():
        parser.error(f"{manifest} not found: pass --tts-dir")
    book = load_compliance_scripts(args.scripts)
    plans = build_plans(load_lines(manifest, SPEECH_DIR / "MANIFEST.tsv"), args.calls,
                        args.seed)
    figures: dict = {"calls": args.calls, "seed": args.seed}
    if args.live:
        figures["live"] = bench_live(args, plans)
    elif args.text:
        figures["text"] = bench_text(args, book, plans)
    elif args.load_transcripts:
        figures.update(rescore(args, book, plans))
    else:
        figures.update(bench_offline(args, book, plans))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
