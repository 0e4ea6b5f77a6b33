"""callwatch privacy benchmark: transcript redaction recall and precision, English and Mandarin,
and what it adds per segment.

    scripts/bench-privacy                  # the rendered lines through ASR, then the eval calls
    scripts/bench-privacy --rate 16000     # lines at 16 kHz instead of a telephone's 8 kHz
    scripts/bench-privacy --calls 400      # more ordinary calls (default 200)
    scripts/bench-privacy --text           # skip ASR: the lines' stored `asr_text`
    scripts/bench-privacy --word-cost      # also: what word times (audio redaction) cost

Recall: the rendered lines of `tests/data/privacy` (card numbers in one turn and split over two,
security codes, expiry dates, resident IDs) are transcribed by the server's ASR engine (the
default settings: bundled `base`, language auto), then each language's lines go through one
`CallRedactor` as one call (media time as rendered, each transcript arriving 0.8 s after its
turn ends). An entity counts as *heard* when the transcript holds its digits exactly, and as
*masked* when its mask is in the redacted text and no digit of it is left. Targets (issue 18):
recall 1.00 on the heard entities.

Precision: masks on the lines that say no number of that kind (the Luhn-invalid reference
number, the agent's question) are false positives, and so is every mask on the ordinary calls
of the compliance evaluation set (`evaluation.callplans.build_plans` over the 154 contact-centre
lines of tests/data/tts/lines.tsv, without the `pii` lines, as faster-whisper transcribed them
and as written). Target: precision >= 0.99 over the ordinary segments.

Latency: the wall time of `CallRedactor.add` per segment (the CPU the redactor adds), and the
media time a segment ending in digits waits for the rest of its number (`held_ms`).

Word-time cost (`--word-cost`): each line decoded with and without `word_timestamps` (what
audio redaction asks the ASR for), alternating, the fastest of three of each; the extra
compute over the plain decodes, and how many lines came back with word times.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from evaluation.callplans import build_plans  # noqa: E402
from evaluation.evalset import load_lines  # noqa: E402
from monitor.privacy.redactor import MASKS, CallRedactor, HeardSegment  # noqa: E402
from monitor.privacy.spoken import Kind, read_units  # noqa: E402

DATA = REPO_ROOT / "tests" / "data" / "privacy"
LINES = REPO_ROOT / "tests" / "data" / "tts" / "lines.tsv"
ASR_DELAY_MS = 800


def digits_of(text: str) -> str:
    return "".join(u.value for u in read_units(text) if u.kind is Kind.DIGITS)


def transcribe(rows: list[dict[str, str]], rate: int, word_cost: bool = False) -> list[str]:
    from scipy.signal import resample_poly

    from asr.engine import WhisperEngine
    from asr.types import AsrRequest
    from config.settings import load_settings
    from ivr_sim.script import load_clip

    settings = load_settings()
    cache = REPO_ROOT / ".cache" / "models"
    engine = WhisperEngine.from_settings(
        settings.asr, cache if cache.exists() else settings.model_cache_dir
    )
    out = []
    best = {False: 0.0, True: 0.0}
    timed = 0
    for row in rows:
        pcm = load_clip(DATA / row["file"], rate).astype(np.float32) / 32768.0
        audio = resample_poly(pcm, 16000 // rate, 1).astype(np.float32) if rate != 16000 else pcm
        [result] = engine.transcribe_batch([AsrRequest(audio=audio)])
        out.append(result.text)
        print(f"  {row['file']}: {result.text}", file=sys.stderr)
        if word_cost:
            runs: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(3):
                for words in (False, True):
                    t0 = time.perf_counter()
                    [r] = engine.transcribe_batch([AsrRequest(audio, word_timestamps=words)])
                    runs[words].append(time.perf_counter() - t0)
            timed += bool(r.words)
            for words, times in runs.items():
                best[words] += min(times)
    if word_cost:
        print(f"\nword times (audio redaction): +{(best[True] / best[False] - 1) * 100:.1f} % ASR "
              f"compute ({best[False]:.2f} s -> {best[True]:.2f} s over {len(rows)} lines, "
              f"fastest of 3 each); {timed}/{len(rows)} lines came back timed")  # fmt: skip
    return out


def entities(row: dict[str, str]) -> list[tuple[str, str, str]]:
    """(kind, digits, part) from the manifest's `entities` column."""
    out = []
    for item in row["entities"].split():
        kind, _, value = item.partition(":")
        digits, _, part = value.partition("@")
        out.append((kind, digits, part))
    return out


def bench_lines(rows: list[dict[str, str]], texts: list[str], tally: dict[str, list[int]]) -> None:
    """Recall and the lines' own false positives, per language."""
    timings: list[float] = []
    held: list[int] = []
    for lang in ("en", "zh"):
        picked = [(r, t) for r, t in zip(rows, texts, strict=True) if r["language"] == lang]
        redactor, cursor, released = CallRedactor(), 0, {}
        spans = []
        for row, text in picked:
            start = cursor + 600
            cursor = start + int(float(row["seconds"]) * 50) * 20  # on the 20 ms grid
            spans.append((start, cursor, row, text))
        # Media time in 20 ms steps, as the gateway ticks the redactor: who is speaking, which
        # utterances are in ASR (ASR_DELAY_MS each), and each transcript when it arrives.
        for now in range(0, cursor + ASR_DELAY_MS + 20_000, 20):
            speaking = any(a <= now < b for a, b, _, _ in spans)
            pending = [a for a, b, _, _ in spans if b <= now < b + ASR_DELAY_MS]
            for start, end, row, text in spans:
                if now == end + ASR_DELAY_MS:
                    seg = HeardSegment(row["role"], start, end, text, row["file"])
                    t0 = time.perf_counter()
                    out = redactor.add(seg, now, pending=pending, speaking=speaking)
                    timings.append(time.perf_counter() - t0)
                    released.update({s.tag: s for s in out})
            released.update(
                {s.tag: s for s in redactor.tick(now, pending=pending, speaking=speaking)}
            )
        released.update({s.tag: s for s in redactor.flush()})
        held += [s.held_ms for s in released.values() if s.held_ms > ASR_DELAY_MS]
        # A number said over two lines is judged on the two lines together.
        groups: dict[str, list[tuple[dict[str, str], str]]] = defaultdict(list)
        for row, text in picked:
            parts = [p for _, _, p in entities(row) if p]
            groups[row["entities"].split("@")[0] if parts else row["file"]].append((row, text))
        for members in groups.values():
            heard = " ".join(t for _, t in members)
            masked = " ".join(str(released[r["file"]].text) for r, _ in members)
            kinds = {(k, d) for r, _ in members for k, d, _ in entities(r)}
            masks = [m for m in MASKS.values() if m in masked]
            expected = {MASKS[k] for k, _ in kinds}
            for kind, value in sorted(kinds):
                ok = MASKS[kind] in masked and value not in digits_of(masked)
                key = f"{lang} heard" if value in digits_of(heard) else f"{lang} misheard"
                tally[key][0] += ok
                tally[key][1] += 1
                state = "masked" if ok else "MISSED"
                print(f"  {lang} {kind:6} {key.split()[1]:8} {state:6} {masked}", file=sys.stderr)
            fps = [m for m in masks if m not in expected and m != MASKS["card_data"]]
            tally[f"{lang} fp"][0] += len(fps)
            tally[f"{lang} fp"][1] += len(members)
    tally["_timings"] = [int(x * 1e6) for x in timings]  # type: ignore[assignment]
    tally["_held"] = held  # type: ignore[assignment]


def bench_calls(n_calls: int, seed: int, tally: dict[str, list[int]]) -> list[float]:
    """Masks on the ordinary evaluation calls (all false positives)."""
    timings: list[float] = []
    for plan in build_plans(load_lines(LINES), n_calls, seed=seed):
        for column in (3, 4):  # exact text, faster-whisper's transcript
            redactor, out = CallRedactor(), []
            for turn, entry in zip(plan.turns, plan.timeline(), strict=True):
                if turn.line.category == "pii":
                    continue
                party, start, end = entry[0], entry[1], entry[2]
                t0 = time.perf_counter()
                out += redactor.add(HeardSegment(party, start, end, entry[column]), end + 800)
                timings.append(time.perf_counter() - t0)
            out += redactor.flush()
            key = f"{plan.language} ordinary"
            tally[key][0] += sum(1 for s in out if s.entities)
            tally[key][1] += len(out)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, choices=(8000, 16000), default=8000)
    parser.add_argument("--calls", type=int, default=200, help="ordinary calls (default 200)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--text", action="store_true", help="use the manifest's asr_text")
    parser.add_argument("--word-cost", action="store_true", help="measure word-time cost")
    args = parser.parse_args(argv)
    with (DATA / "MANIFEST.tsv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    print(f"transcribing {len(rows)} lines at {args.rate} Hz ...", file=sys.stderr)
    texts = (
        [r["asr_text"] for r in rows] if args.text else transcribe(rows, args.rate, args.word_cost)
    )
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    bench_lines(rows, texts, tally)
    line_us = tally.pop("_timings")
    held = tally.pop("_held")
    call_us = [int(x * 1e6) for x in bench_calls(args.calls, args.seed, tally)]

    source = "manifest asr_text" if args.text else f"ASR at {args.rate} Hz"
    print(f"\nredaction on tests/data/privacy ({source}) and {args.calls} ordinary calls")
    print(f"{'lang':4} {'recall(heard)':>14} {'recall(all)':>12} {'line FP':>8} "
          f"{'ordinary segs':>14} {'masked':>7} {'precision':>10}")  # fmt: skip
    for lang in ("en", "zh"):
        h, m = tally[f"{lang} heard"], tally[f"{lang} misheard"]
        fp, od = tally[f"{lang} fp"], tally[f"{lang} ordinary"]
        recall_h = f"{h[0] / h[1]:.2f} ({h[0]}/{h[1]})" if h[1] else "-"
        recall_a = f"{(h[0] + m[0]) / (h[1] + m[1]):.2f}" if h[1] + m[1] else "-"
        precision = 1 - od[0] / od[1] if od[1] else float("nan")
        print(f"{lang:4} {recall_h:>14} {recall_a:>12} {fp[0]:>8} {od[1]:>14} {od[0]:>7} "
              f"{precision:>10.4f}")  # fmt: skip
    every = line_us + call_us
    print(f"\nadded latency: CallRedactor.add {statistics.median(every):.0f} us median, "
          f"p99 {np.percentile(every, 99):.0f} us, max {max(every)} us per segment "
          f"({len(every)} segments)")  # fmt: skip
    if held:
        print(f"held back for the rest of a number: {len(held)} segments, media time waited "
              f"median {statistics.median(held) - ASR_DELAY_MS:.0f} ms after the ASR result "
              f"(max {max(held) - ASR_DELAY_MS} ms; privacy.hold_ms bounds it)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
