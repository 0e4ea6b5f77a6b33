"""End-of-call judgement: the checklist per stage, the deductions and the compliance score.

This module owns how a call's compliance turns into one number: start at 100 and take off
each required stage's `deduction` when it was missed or heard outside its window, each
forbidden rule's `deduction` once (however often it was broken), and each order violation's
`order_deduction`; floor at 0. A call passes when the score reaches the script's
`pass_score` and nothing of `critical` severity went wrong (a critical miss or forbidden
phrase fails the call whatever its score, as in contact-centre "fatal error" grading).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from monitor.qa.events import (
    ComplianceResult,
    Deduction,
    ForbiddenPhraseSaid,
    OrderViolated,
    RuleSuspended,
    StageChecked,
    StageStatus,
)
from monitor.qa.rules import ComplianceScript, Severity, Stage

if TYPE_CHECKING:
    from monitor.qa.hits import Hit


@dataclass(slots=True)
class StageState:
    """What the checker knows about one stage so far (mutable, private to one call)."""

    stage: Stage
    status: StageStatus | None = None  # None = not judged yet
    hit: Hit | None = None  # in-window hit (the latest one for "last N s" stages)
    outside: Hit | None = None  # heard, but outside the window
    order_ok: bool = True
    missed_at_ms: int = 0
    # The best hit of each element in the party's current turn (see checker._stage_hit).
    cache_turn: tuple[str, int] | None = None
    cache: list[Hit | None] = field(default_factory=list)


def _row(st: StageState) -> StageChecked:
    stage = st.stage
    status = st.status or StageStatus.MISSED
    if status is StageStatus.MISSED and st.outside is not None:
        status = StageStatus.OUTSIDE_WINDOW
    failed = status in (StageStatus.MISSED, StageStatus.OUTSIDE_WINDOW)
    hit = st.hit if status is StageStatus.PASSED else st.outside
    return StageChecked(
        stage=stage.id,
        title=stage.title,
        status=status.value,
        required=stage.required,
        severity=stage.severity.value,
        deduction=stage.deduction if failed and stage.required else 0.0,
        window=stage.window.describe(),
        phrase=hit.phrase if hit else "",
        matched_text=hit.matched_text if hit else "",
        score=hit.score if hit else 0.0,
        start_ms=hit.start_ms if hit else None,
        end_ms=hit.end_ms if hit else None,
        party=hit.party if hit else "",
        order_ok=st.order_ok,
    )


def build_result(
    script: ComplianceScript,
    stages: list[StageState],
    forbidden: list[ForbiddenPhraseSaid],
    orders: list[OrderViolated],
    suspensions: list[RuleSuspended],
    duration_ms: int,
) -> ComplianceResult:
    rows = tuple(_row(st) for st in stages)
    deductions: list[Deduction] = []
    critical = False
    for st, row in zip(stages, rows, strict=True):
        if row.deduction > 0 or (row.required and row.status in ("missed", "outside_window")):
            deductions.append(
                Deduction(row.stage, row.status, row.severity, row.deduction, st.missed_at_ms)
            )
            critical |= row.required and st.stage.severity is Severity.CRITICAL
    rules = {r.id: r for r in script.forbidden}
    seen: set[str] = set()
    for said in forbidden:
        critical |= said.severity == Severity.CRITICAL.value
        if said.rule in seen:
            continue
        seen.add(said.rule)
        deductions.append(
            Deduction(
                said.rule, "forbidden", said.severity, rules[said.rule].deduction, said.start_ms
            )
        )
    for order in orders:
        critical |= order.severity == Severity.CRITICAL.value
        deductions.append(
            Deduction(order.stage, "order", order.severity, order.deduction, order.at_ms)
        )
    score = max(0.0, 100.0 - sum(d.points for d in deductions))
    return ComplianceResult(
        script=script.name,
        score=round(score, 1),
        passed=score >= script.pass_score and not critical,
        critical=critical,
        stages=rows,
        forbidden=tuple(forbidden),
        order_violations=tuple(orders),
        suspensions=tuple(suspensions),
        deductions=tuple(deductions),
        duration_ms=duration_ms,
    )
