"""Text-level evaluation: 200 labelled calls (1,000 at 20 % CER), exact, as faster-whisper
heard them, and with injected ASR errors (homophones, near-homophones, dropped and inserted
characters and words, Traditional characters) at 5-20 % CER. Targets: precision and recall
>= 0.95 for English and >= 0.90 for Mandarin, per stage, for forbidden phrases and for order
violations.

The same calls, rendered to audio and run through the segmenter and Whisper, are measured by
`scripts/bench-compliance`; here only text, so the suite stays fast.
"""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest

from evaluation.callplans import Tally, build_plans, check_call, checker_for
from evaluation.evalset import CallPlan, heldout_lines, load_lines
from evaluation.noise import inject_errors
from monitor.qa import ScriptBook, load_compliance_scripts

DATA = Path(__file__).resolve().parent / "data"
TARGET = {"en": 0.95, "zh": 0.90}
CALLS = 200


@functools.cache
def plans(heldout: bool = False) -> tuple[CallPlan, ...]:
    """The evaluation calls; `heldout`: the same kind of calls from agent lines the scripts
    were never tuned on (tests/data/tts/heldout_round4.tsv, round 4's held-out set; the
    earlier held-out files are tuning lines since round 4)."""
    lines = load_lines(DATA / "tts" / "lines.tsv", DATA / "speech" / "MANIFEST.tsv")
    if heldout:
        lines = heldout_lines(DATA / "tts" / "heldout_round4.tsv", lines)
    return tuple(build_plans(lines, CALLS, seed=7))


@functools.cache
def scripts(semantic: bool) -> ScriptBook:
    """The shipped scripts, loaded once for the module: the sentence model loads once and
    its cache of clause vectors serves every run (the same vectors a fresh book computes)."""
    return load_compliance_scripts(semantic=semantic)


@functools.cache
def run(variant: str, cer: float = 0.0, heldout: bool = False, semantic: bool = True) -> Tally:
    book = scripts(semantic)
    rng = random.Random(1)
    tally = Tally()
    for plan in plans(heldout):
        checker = checker_for(book, plan)
        timeline = plan.timeline()
        for party, start, end, text, asr_text in timeline:
            if variant == "asr_text":
                text = asr_text
            elif variant == "noisy":
                text = inject_errors(text, plan.language, cer, rng)
            checker.on_segment(party, start, end, text, plan.language)
            checker.advance(end)
        tally.score(plan, checker.finish(timeline[-1][2] + 600), variant)
    return tally


def run_sets(cer: float, seeds: tuple[int, ...]) -> Tally:
    """Several sets of calls, each with its own errors (`random.Random(seed)`), pooled, fed
    in the order segments arrive: as `scripts/bench-compliance --text` measures them."""
    book = scripts(True)
    lines = load_lines(DATA / "tts" / "lines.tsv", DATA / "speech" / "MANIFEST.tsv")
    tally = Tally()
    for seed in seeds:
        rng = random.Random(seed)
        for plan in build_plans(lines, CALLS, seed):
            segments = [
                (party, start, end, inject_errors(text, plan.language, cer, rng), plan.language)
                for party, start, end, text, _ in plan.timeline()
            ]
            duration = max(s[2] for s in segments) + 600
            tally.score(plan, check_call(book, plan, segments, duration), "noisy")
    return tally


def below(
    tally: Tally, *, recall: bool, skip: tuple[str, ...] = (), floor: float | None = None
) -> list[str]:
    out = []
    for (lang, key), counts in sorted(tally.counts.items()):
        if key in skip:
            continue
        want = TARGET[lang] if floor is None else floor
        p, r = tally.precision(lang, key), tally.recall(lang, key)
        if p < want or (recall and r < want):
            out.append(f"{lang} {key}: precision {p:.3f} recall {r:.3f} {counts}")
    return out


def test_the_evaluation_set() -> None:
    calls = plans()
    assert len(calls) == CALLS
    for lang in ("en", "zh"):
        mine = [c for c in calls if c.language == lang]
        assert len(mine) == CALLS // 2
        variants = " ".join(c.variant for c in mine)
        for kind in (
            "greeting=scripted",
            "greeting=paraphrase",
            "greeting=near_miss",
            "greeting=omitted",
            "closing=near_miss",
            "order=",
            "forbidden",
        ):
            assert kind in variants, (lang, kind)
        assert any(t.line.corpus == "speech" for c in mine for t in c.turns)  # real speech


@pytest.mark.parametrize("variant", ["exact", "asr_text"])
def test_targets_on_exact_and_whisper_transcripts(variant: str) -> None:
    tally = run(variant)
    assert not below(tally, recall=True), tally.table() + "\n" + "\n".join(tally.errors)


# Per commit at 10 % only (the CPU of the suite: 15 s a rate); 5 % (milder damage) and 15 %
# run with scripts/test --long, and scripts/bench-compliance --text prints every rate.
@pytest.mark.parametrize(
    "cer",
    [pytest.param(0.05, marks=pytest.mark.long), 0.10, pytest.param(0.15, marks=pytest.mark.long)],
)
def test_targets_up_to_15_percent_cer(cer: float) -> None:
    """Both languages, every stage, forbidden phrases and order: the full targets.
    Homophones cost nothing and near-homophones and particles half an edit
    (`monitor.qa.align`), anchors keep confusable stages apart, and English words count
    across the word boundaries ASR moves ("call yeah in" for "calling")."""
    tally = run("noisy", cer)
    assert not below(tally, recall=True), tally.table() + "\n" + "\n".join(tally.errors)


@pytest.mark.long  # 90 s: the 1,000-call sweep; scripts/test --long and the compliance bench
def test_targets_at_20_percent_cer_over_1000_calls() -> None:
    """The heaviest damage, on the bench's five sets of 200 calls: every stage, forbidden
    phrases and order violations keep the targets in both languages. (One set alone is too
    small at 20 %: ten order violations per language, so one miss is 10 %.)"""
    tally = run_sets(0.20, seeds=(7, 8, 9, 10, 11))
    assert not below(tally, recall=True), tally.table()


# With scripts/test --long (CPU: 25 s); per commit, precision under ASR errors is held at 10 %
# here and on the held-out lines below, and the 1,000-call sweep above holds it at 20 %.
@pytest.mark.parametrize("cer", [pytest.param(0.20, marks=pytest.mark.long)])
def test_precision_holds_at_higher_cer(cer: float) -> None:
    """Damaged transcripts lose hits (recall, see the bench) but must not invent them.
    Order violations are left out: ten per language, one stray is already 10 %."""
    tally = run("noisy", cer)
    assert not below(tally, recall=False, skip=("order",)), tally.table()
    # Recall degrades gracefully rather than collapsing. Lowest on these 200 calls: English
    # forbidden phrases, 0.90 (3 of 31 missed); over 1,000 calls (`scripts/bench-compliance
    # --text`) every row reaches the targets, English forbidden phrases 0.96.
    assert not below(tally, recall=True, skip=("order",), floor=0.88), tally.table()


#: The round-4 held-out set (heldout_round4.tsv, measured once after round 4's tuning,
#: docs/compliance.md "Round 4"): where a figure falls short of the target, the floor sits
#: a little under the measured figure, so the test fails if the checker gets worse on
#: wording it never saw. Exact text, (language, what) -> (precision floor, recall floor).
HELDOUT_EXACT_SHORT = {
    ("en", "confirmation"): (0.92, 0.79),  # measured 0.938 / 0.811
    ("en", "hold"): (0.85, 0.95),  # 0.865 / 1.00
    ("en", "forbidden"): (0.97, 0.56),  # 1.00 / 0.586
    ("en", "greeting"): (0.95, 0.95),  # 1.00 / 0.974
    ("en", "verification"): (0.95, 0.89),  # 1.00 / 0.908
    ("en", "pre_closing"): (0.95, 0.88),  # 1.00 / 0.900
    ("en", "order"): (0.95, 0.85),  # 1.00 / 0.889 (9 violations)
    ("zh", "confirmation"): (0.65, 0.83),  # 0.674 / 0.853
    ("zh", "hold"): (0.90, 0.88),  # 0.922 / 0.904
    ("zh", "forbidden"): (0.90, 0.70),  # 1.00 / 0.724
    ("zh", "order"): (0.90, 0.85),  # 1.00 / 0.867 (15 violations)
}


def test_heldout_lines_on_exact_transcripts() -> None:
    """Wordings, companies and agent names the scripts were not tuned on, near misses
    included: every row at the targets or at its measured floor."""
    tally = run("exact", heldout=True)
    table = tally.table() + "\n" + "\n".join(tally.errors)
    for (lang, key), _ in sorted(tally.counts.items()):
        p_floor, r_floor = HELDOUT_EXACT_SHORT.get((lang, key), (TARGET[lang], TARGET[lang]))
        assert tally.precision(lang, key) >= p_floor, (lang, key, table)
        assert tally.recall(lang, key) >= r_floor, (lang, key, table)


@pytest.mark.parametrize("cer", [0.10, 0.20])
def test_heldout_lines_keep_precision_under_asr_errors(cer: float) -> None:
    # The phrases alone on unseen, damaged wording: at the targets but for English hold
    # (measured 0.91 at 10 %, 0.94 at 20 %: a "hold" phrase in a neutral line) and Mandarin
    # confirmation (0.54 / 0.57: "跟您核对一下" also opens identity checks, "先跟您核对一下
    # 信息，您的出生日期是？").
    tally = run("noisy", cer, heldout=True, semantic=False)
    assert not below(tally, recall=False, skip=("order", "hold", "confirmation")), tally.table()
    assert tally.precision("en", "hold") >= 0.89, tally.table()
    assert tally.precision("zh", "confirmation") >= 0.52, tally.table()
    assert tally.precision("zh", "hold") >= TARGET["zh"], tally.table()
    assert tally.precision("en", "confirmation") >= TARGET["en"], tally.table()


#: With the intents, under injected errors (measured at 10 % / 20 % CER): the rows under
#: the targets and their floors, a little under the lower of the two.
HELDOUT_NOISY_PRECISION = {
    ("en", "confirmation"): 0.88,  # 0.900 / 0.923
    ("en", "forbidden"): 0.76,  # 0.786 / 1.00
    ("en", "hold"): 0.91,  # 0.933 / 0.951
    ("zh", "confirmation"): 0.64,  # 0.711 / 0.667
    ("zh", "hold"): 0.85,  # 0.898 / 0.870
    ("zh", "forbidden"): 0.92,  # 0.941 / 0.950
}


@pytest.mark.parametrize("cer", [0.10, pytest.param(0.20, marks=pytest.mark.long)])
def test_heldout_precision_with_intents_under_asr_errors(cer: float) -> None:
    """With the intents (the shipped checker) precision on unseen, damaged wording dips
    below the targets for a few rules (docs/compliance.md, "Round 4"); these floors lock
    what it reaches so it gets no worse."""
    tally = run("noisy", cer, heldout=True)
    skip = ("order", *{what for _, what in HELDOUT_NOISY_PRECISION})
    assert not below(tally, recall=False, skip=skip), tally.table()
    for (lang, what), floor in HELDOUT_NOISY_PRECISION.items():
        assert tally.precision(lang, what) >= floor, (lang, what, tally.table())
