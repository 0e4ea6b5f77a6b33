"""The labelled compliance evaluation calls for the shipped scripts, and how to score them.

Used by `scripts/bench-compliance` (rendered to audio, through the real segmenter and ASR) and
by the text-level tests (transcripts with injected ASR errors). Never on the live path.

`build_plans(lines, n)` draws `n` two-party calls from the labelled lines
(`evaluation/evalset.py`), half per language, each a variant of the script: the greeting
scripted, paraphrased, a near miss (which must not count) or omitted; verification said or
not; optional hold notice, request confirmation and "anything else?"; the closing scripted,
paraphrased, a near miss or omitted; one forbidden line in some calls; and some calls out of
order (verification before the greeting, or the closing before "anything else?"). Each plan
knows which stages were said, which forbidden rules were broken and which order violations it
contains.

`check_call` runs the checker the runtime would start over one call's segments; `Tally`
counts true/false positives per (language, what) and prints precision and recall.
"""

from __future__ import annotations

import random
import re
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from evaluation.evalset import STAGES, CallPlan, Line, PlannedTurn
from monitor.qa.book import ScriptBook
from monitor.qa.checker import ComplianceChecker
from monitor.qa.events import ComplianceResult
from monitor.qa.rules import agent_name_of


def checker_for(book: ScriptBook, plan: CallPlan, semantic: bool = True) -> ComplianceChecker:
    """The checker the runtime would start for this call (script and agent name from the
    metadata the simulated switch sends); `semantic=False`: phrases only, no intents."""
    script = book.select(plan.metadata, plan.language)
    return ComplianceChecker(script, agent_name=agent_name_of(plan.metadata), semantic=semantic)


def check_call(
    book: ScriptBook,
    plan: CallPlan,
    segments: Iterable[tuple[str, int, int, str, str]],
    duration_ms: int,
    timings: list[float] | None = None,
    semantic: bool = True,
) -> ComplianceResult:
    """Check one call's (party, start_ms, end_ms, text, language) segments in the order they
    would arrive (by end time), advancing the watermark after each; `timings` gets the
    CPU seconds each segment took (this thread's CPU time: on a shared machine, wall time
    mostly measures the neighbours)."""
    checker = checker_for(book, plan, semantic)
    for party, start, end, text, language in sorted(segments, key=lambda s: (s[2], s[1])):
        t0 = time.thread_time()
        checker.on_segment(party, start, end, text, language)
        checker.advance(end)
        if timings is not None:
            timings.append(time.thread_time() - t0)
    return checker.finish(duration_ms)


def _pick(rng: random.Random, options: list[Line]) -> Line:
    return options[rng.randrange(len(options))]


def build_plans(lines: Iterable[Line], n_calls: int, seed: int = 7) -> list[CallPlan]:
    """`n_calls` labelled calls, alternating Mandarin and English; deterministic per seed."""
    rng = random.Random(seed)
    pools: dict[tuple[str, str], list[Line]] = defaultdict(list)
    for line in lines:
        pools[(line.language, line.category)].append(line)
        if line.stages:
            for stage in line.stages:
                pools[(line.language, "stage:" + stage)].append(line)
    plans = []
    for i in range(n_calls):
        language = ("zh", "en")[i % 2]
        plans.append(_plan(rng, language, pools, f"{language}-{i:03d}"))
    return plans


def _plan(
    rng: random.Random, lang: str, pools: dict[tuple[str, str], list[Line]], name: str
) -> CallPlan:
    def pool(category: str) -> list[Line]:
        return pools[(lang, category)]

    def near(kind: str) -> list[Line]:
        return [x for x in pool("near_miss") if f"near_miss_{kind}" in x.file]

    said: set[str] = set()
    variant: list[str] = []
    agent: list[Line] = []
    roll = rng.random()
    greeting_kind = (
        "scripted"
        if roll < 0.55
        else "paraphrase"
        if roll < 0.75
        else "near_miss"
        if roll < 0.9
        else "omitted"
    )
    variant.append(f"greeting={greeting_kind}")
    greeting_pools = {
        "scripted": pool("greeting"),
        "paraphrase": pool("paraphrase_greeting"),
        "near_miss": near("greeting"),
        "omitted": [],
    }
    options = greeting_pools[greeting_kind]
    greeting = _pick(rng, options) if options else None
    verification = _pick(rng, pool("verification")) if rng.random() < 0.75 else None
    order: set[tuple[str, str]] = set()
    early_verification = (
        greeting_kind in ("scripted", "paraphrase") and verification and rng.random() < 0.12
    )
    if early_verification and verification is not None:
        agent.append(verification)
        order.add(("verification", "greeting"))
        variant.append("order=verification<greeting")
    if greeting is not None:
        agent.append(greeting)
    if verification is not None and not early_verification:
        agent.append(verification)
    middle = [_pick(rng, pool("neutral")) for _ in range(rng.randint(1, 2))]
    holds = [x for x in pool("stage:hold") if x.category == "hold"]
    if rng.random() < 0.5:
        middle.insert(rng.randint(0, len(middle)), _pick(rng, holds))
    if rng.random() < 0.4:
        middle.insert(0, _pick(rng, pool("stage:confirmation")))
    forbidden: set[str] = set()
    if rng.random() < 0.3:
        line = _pick(rng, pool("forbidden"))
        middle.insert(rng.randint(0, len(middle)), line)
        forbidden.update(line.forbidden)
        variant.append("forbidden")
    agent.extend(middle)
    pre_closing = _pick(rng, pool("stage:pre_closing")) if rng.random() < 0.4 else None
    roll = rng.random()
    closing_kind = (
        "scripted"
        if roll < 0.5
        else "paraphrase"
        if roll < 0.7
        else "near_miss"
        if roll < 0.85
        else "omitted"
    )
    variant.append(f"closing={closing_kind}")
    closings = [x for x in pool("closing") if "closing" in x.stages]
    closing_pools = {
        "scripted": closings,
        "paraphrase": pool("paraphrase_closing"),
        "near_miss": near("closing"),
        "omitted": [],
    }
    options = closing_pools[closing_kind]
    closing = _pick(rng, options) if options else None
    late_pre_closing = (
        closing_kind in ("scripted", "paraphrase") and pre_closing and rng.random() < 0.25
    )
    if pre_closing is not None and not late_pre_closing:
        agent.append(pre_closing)
    if closing is not None:
        agent.append(closing)
    if late_pre_closing and pre_closing is not None:
        agent.append(pre_closing)
        order.add(("closing", "pre_closing"))
        variant.append("order=closing<pre_closing")
    for line in agent:
        said.update(line.stages)
    turns = _interleave(rng, lang, agent, pools)
    return CallPlan(
        name,
        lang,
        tuple(turns),
        frozenset(said),
        frozenset(forbidden),
        frozenset(order),
        " ".join(variant),
        _metadata(lang, name, agent, pools),
    )


#: How the rendered English agent lines give a name ("my name is Anna", "David speaking").
_NAME = re.compile(r"(?:my name is|this is|I'm) ([A-Z][a-z]+)|([A-Z][a-z]+) (?:speaking|here)\b")


def _names(line: Line) -> list[str]:
    return [a or b for a, b in _NAME.findall(line.text)]


def _metadata(
    lang: str, name: str, agent: list[Line], pools: dict[tuple[str, str], list[Line]]
) -> dict[str, str]:
    """What the simulated switch sends: the queue and, for English, the agent's name, as a
    switch that knows who took the call would. The agent is the one the greeting names; a
    call whose lines name nobody gets one of the set's agents, picked from the call's name
    (not the plan's random stream, so adding metadata never changes the calls)."""
    meta = {"queue": f"{lang}-eval"}
    if lang != "en":
        return meta
    said = [n for line in agent for n in _names(line)]
    if not said:
        everyone = sorted(
            {n for (lg, _), lines in pools.items() if lg == lang for x in lines for n in _names(x)}
        )
        said = [everyone[zlib.crc32(name.encode()) % len(everyone)]] if everyone else []
    if said:
        meta["agentName"] = said[0]
    return meta


def _interleave(
    rng: random.Random, lang: str, agent: list[Line], pools: dict[tuple[str, str], list[Line]]
) -> list[PlannedTurn]:
    """Agent lines with customer replies between most of them: synthetic complaints and
    questions, or real read speech."""
    customers = pools[(lang, "customer")] + pools[(lang, "pii")]
    customers = [c for c in customers if c.role == "customer"]
    fillers = pools[(lang, "filler")]
    turns = [PlannedTurn("agent", agent[0], round(rng.uniform(0.3, 1.0), 2))]
    for line in agent[1:]:
        if rng.random() < 0.8:
            source = fillers if fillers and rng.random() < 0.3 else customers
            turns.append(
                PlannedTurn("customer", _pick(rng, source), round(rng.uniform(0.4, 1.2), 2))
            )
        turns.append(PlannedTurn("agent", line, round(rng.uniform(0.5, 1.2), 2)))
    if rng.random() < 0.5:
        last = _pick(rng, customers)  # drawn before its pause: the plans depend on the order
        turns.append(PlannedTurn("customer", last, round(rng.uniform(0.4, 1.0), 2)))
    return turns


@dataclass
class Tally:
    """Per (language, key): true positives, false positives, false negatives."""

    counts: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, language: str, key: str, expected: bool, got: bool, note: str = "") -> None:
        c = self.counts.setdefault((language, key), [0, 0, 0])
        if expected and got:
            c[0] += 1
        elif got:
            c[1] += 1
            self.errors.append(f"FP {language} {key}: {note}")
        elif expected:
            c[2] += 1
            self.errors.append(f"FN {language} {key}: {note}")

    def score(self, plan: CallPlan, result: ComplianceResult, note: str = "") -> None:
        heard = {row.stage for row in result.stages if row.heard}
        for stage in STAGES:
            self.add(
                plan.language,
                stage,
                stage in plan.said,
                stage in heard,
                f"{plan.name} [{plan.variant}] {note}",
            )
        said = {f.rule for f in result.forbidden}
        for rule in plan.forbidden | said:
            self.add(
                plan.language,
                "forbidden",
                rule in plan.forbidden,
                rule in said,
                f"{plan.name} {rule} {note}",
            )
        orders = {(o.stage, o.expected_after) for o in result.order_violations}
        for pair in plan.order | orders:
            self.add(
                plan.language,
                "order",
                pair in plan.order,
                pair in orders,
                f"{plan.name} {pair} {note}",
            )

    def precision(self, language: str, key: str) -> float:
        tp, fp, _ = self.counts.get((language, key), [0, 0, 0])
        return tp / (tp + fp) if tp + fp else 1.0

    def recall(self, language: str, key: str) -> float:
        tp, _, fn = self.counts.get((language, key), [0, 0, 0])
        return tp / (tp + fn) if tp + fn else 1.0

    def table(self) -> str:
        rows = [
            f"{'lang':4} {'what':13} {'TP':>4} {'FP':>4} {'FN':>4} {'precision':>9} {'recall':>7}"
        ]
        for lang, key in sorted(self.counts):
            tp, fp, fn = self.counts[(lang, key)]
            rows.append(
                f"{lang:4} {key:13} {tp:4d} {fp:4d} {fn:4d} "
                f"{self.precision(lang, key):9.3f} {self.recall(lang, key):7.3f}"
            )
        return "\n".join(rows)
