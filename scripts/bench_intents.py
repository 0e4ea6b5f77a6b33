"""Tuning bench for the scripts' intents: development lines only, per line and per call.

    .venv/bin/python scripts/bench_intents.py lines      # every dev line, exact and noisy:
                                                         # what it should and did match
    .venv/bin/python scripts/bench_intents.py calls      # P/R on calls built from dev lines
    .venv/bin/python scripts/bench_intents.py calibrate  # per intent: scores of its own lines
                                                         # and the best score of any other

The development ("tuning") set is `tests/data/tts/intent_tuning.tsv` and `intent_dev.tsv`
(written for the intents) and, since round 4, the earlier rounds' held-out lines
(`heldout.tsv`, `heldout_semantic.tsv`: measured on in rounds 1-3, tuned on from round 4),
with the context lines of `lines.tsv`. Every example, threshold, anchor and veto of the
shipped scripts is set from what this prints. The held-out lines (`heldout_round4.tsv`)
are not read here: they are scored by `scripts/bench-compliance --text` (tables only) and,
through the real ASR, by `scripts/bench-compliance --heldout`, once a round of tuning is
finished.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# This checkout's code, not whatever the environment's editable install points at (in a
# worktree that is another checkout: the bench would measure the wrong scripts).
sys.path.insert(0, str(REPO_ROOT))

from evaluation.callplans import Tally, build_plans, check_call  # noqa: E402
from evaluation.evalset import CONTEXT_CATEGORIES as CONTEXT  # noqa: E402
from evaluation.evalset import Line, heldout_lines, load_lines  # noqa: E402
from evaluation.noise import inject_errors  # noqa: E402
from monitor.qa import ComplianceChecker, ScriptBook, load_compliance_scripts  # noqa: E402
from monitor.qa.intents import IntentIndex, IntentTracker  # noqa: E402

DATA = REPO_ROOT / "tests" / "data"
#: The development set: lines written to tune the intents and the held-out lines of rounds
#: 1-3 (round 4 tunes on them; never on heldout_round4.tsv).
DEV = (
    DATA / "tts" / "intent_tuning.tsv",
    DATA / "tts" / "intent_dev.tsv",
    DATA / "tts" / "heldout.tsv",
    DATA / "tts" / "heldout_semantic.tsv",
)
#: The labelled agent lines of DEV, by their files' prefixes.
DEV_PREFIXES = ("tuning/", "dev/", "heldout/", "heldout2/")
VARIANTS = (("exact", 0.0), ("cer10", 0.10), ("cer20", 0.20))
#: The calibrated threshold: the best score of any other dev line, plus this, and at least
#: 0.5 (below that USE v3 calls loosely related sentences similar).
SPARE = 0.02


def dev_lines() -> list[Line]:
    lines = load_lines(DATA / "tts" / "lines.tsv", DATA / "speech" / "MANIFEST.tsv")
    return heldout_lines(DEV, lines)


def heard(book: ScriptBook, language: str, text: str) -> set[str]:
    """The stages and forbidden rules one agent segment matched, on its own."""
    script = book.select({}, language)
    checker = ComplianceChecker(script)
    events = checker.on_segment("agent", 100_000, 103_000, text)
    return {getattr(e, "stage", None) or e.rule for e in events if hasattr(e, "phrase")}


def report_lines(book: ScriptBook, seeds: int) -> int:
    """Every dev agent line: expected rules vs heard ones, exact and noisy."""
    wrong = 0
    total = 0
    for line in dev_lines():
        if line.role != "agent" or line.corpus != "tts":
            continue
        if not line.file.startswith(DEV_PREFIXES):
            continue
        want = set(line.stages) | set(line.forbidden)
        for name, cer in VARIANTS:
            for seed in range(seeds if cer else 1):
                text = (
                    inject_errors(line.text, line.language, cer, random.Random(seed))
                    if cer
                    else line.text
                )
                got = heard(book, line.language, text)
                total += 1
                if got != want:
                    wrong += 1
                    missing = ",".join(sorted(want - got)) or "-"
                    extra = ",".join(sorted(got - want)) or "-"
                    print(f"{name:5} miss={missing:14} extra={extra:14} {line.file:28} {text}")
    print(f"\n{wrong} of {total} line variants wrong")
    return 0


def report_calls(book: ScriptBook, calls: int, sets: int, errors: bool) -> int:
    lines = dev_lines()
    for name, cer in VARIANTS:
        tallies = {False: Tally(), True: Tally()}
        for seed in range(7, 7 + sets):
            plans = build_plans(lines, calls, seed)
            for semantic, tally in tallies.items():
                rng = random.Random(seed)
                for plan in plans:
                    segments = [
                        (p, a, b, inject_errors(t, plan.language, cer, rng) if cer else t, "")
                        for p, a, b, t, _ in plan.timeline()
                    ]
                    end = max(s[2] for s in segments) + 600
                    tally.score(plan, check_call(book, plan, segments, end, semantic=semantic))
        print(f"\n== dev calls: {name} ({calls * sets} calls): lexical | semantic ==")
        old, new = tallies[False], tallies[True]
        for lang, key in sorted(set(old.counts) | set(new.counts)):
            print(
                f"{lang:4} {key:13} {old.precision(lang, key):6.3f} {old.recall(lang, key):6.3f}"
                f"   {new.precision(lang, key):6.3f} {new.recall(lang, key):6.3f}"
            )
        if errors:
            print("\n".join(new.errors))
    return 0


def calibrate(book: ScriptBook, seeds: int) -> int:
    """Per whole-step intent: the scores its own dev lines reach with its threshold set to the
    floor (the other intents', margins and guards kept, so it is measured as it will run) and
    the scores other dev lines reach for it. The shipped threshold is the lowest that keeps
    every other dev line out, with a few hundredths to spare."""
    for script in book.scripts:
        index = script.intents
        if index is None:
            continue
        variants: list[tuple[str, str, set[str]]] = []
        # Every tuning line: the dev lines and the labelled lines the phrases came from.
        everything = dev_lines() + [
            x for x in load_lines(DATA / "tts" / "lines.tsv") if x.category not in CONTEXT
        ]
        for line in everything:
            if line.language != script.language or line.role != "agent" or line.corpus != "tts":
                continue
            want = set(line.stages) | set(line.forbidden)
            for name, cer in VARIANTS:
                for seed in range(seeds if cer else 1):
                    text = line.text
                    if cer:
                        text = inject_errors(text, line.language, cer, random.Random(seed))
                    variants.append((name, text, want))
        print(f"\n== {script.name} ==")
        for i, x in enumerate(index.intents):
            if not x.exclusive:
                continue
            low = list(index.intents)
            low[i] = dataclasses.replace(x, threshold=0.3)
            probe = IntentIndex(tuple(low), index.encoder)
            mine: list[float] = []
            other: list[tuple[float, str]] = []
            for name, text, want in variants:
                hits = IntentTracker(probe).add("agent", 1, 0, 3000, text)
                score = max((h.score for h in hits if h.rule == x.rule), default=0.0)
                if x.rule in want:
                    mine.append(score)
                elif score:
                    other.append((score, f"{name} {text}"))
            other.sort(reverse=True)
            top = other[0][0] if other else 0.0
            curve = "  ".join(
                f"{t:.2f}:{sum(s >= t for s in mine)}/{sum(s >= t for s, _ in other)}"
                for t in (0.45, 0.5, 0.55, 0.6, 0.65, 0.7)
            )
            suggested = max(0.5, math.ceil((top + SPARE) * 100) / 100) if mine else x.threshold
            print(
                f"{x.rule:20} threshold {x.threshold:.2f} (suggested {suggested:.2f})  "
                f"own lines {len(mine)}, "
                f"best other {top:.3f}; own/other hits at  {curve}"
            )
            for score, text in other[:3]:
                print(f"    other {score:.3f} {text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=("lines", "calls", "calibrate"))
    parser.add_argument("--seeds", type=int, default=3, help="noisy copies per line")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--sets", type=int, default=1)
    parser.add_argument("--errors", action="store_true")
    args = parser.parse_args(argv)
    book = load_compliance_scripts()
    if args.what == "lines":
        return report_lines(book, args.seeds)
    if args.what == "calls":
        return report_calls(book, args.calls, args.sets, args.errors)
    return calibrate(book, args.seeds)


if __name__ == "__main__":
    sys.exit(main())
