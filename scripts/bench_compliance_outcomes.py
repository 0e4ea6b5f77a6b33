"""scripts/bench-compliance, live mode: what the server stored for each streamed call, read
back, kept in the `--outcomes` file, and turned into the checker's own result type.
"""

from __future__ import annotations

import json
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import Any

from bench_compliance_core import Segment

from evaluation.evalset import CallPlan
from ivr_sim.harness import progress
from monitor.qa import (
    ComplianceResult,
    Deduction,
    ForbiddenPhraseSaid,
    OrderViolated,
    RuleSuspended,
    ScriptBook,
    ScriptNotFound,
    StageChecked,
)
from storage.repository import Repository


# -- live: through a real server ---------------------------------------------------------
@dataclass
class LiveOutcome:
    """What the server stored for one streamed evaluation call."""

    plan: CallPlan
    external_id: str
    call_id: str = ""
    status: str = ""
    document: dict[str, Any] | None = None  # the stored compliance result
    segments: list[Segment] = field(default_factory=list)
    duration_ms: int = 0
    audio_s: float = 0.0
    utterances: int = 0
    shed: int = 0
    late: int = 0  # utterances transcribed after the call was finalised
    error: str | None = None
    wall_s: float = 0.0  # from the first frame streamed to the result read back


def outcome_to_json(out: LiveOutcome) -> dict[str, Any]:
    """One scored call as a line of the `--outcomes` file (enough to score it again)."""
    return {
        "plan": out.plan.name,
        "external_id": out.external_id,
        "call_id": out.call_id,
        "status": out.status,
        "document": out.document,
        "segments": [list(astuple(s)) for s in out.segments],
        "duration_ms": out.duration_ms,
        "audio_s": out.audio_s,
        "utterances": out.utterances,
        "shed": out.shed,
        "late": out.late,
        "error": out.error,
        "wall_s": out.wall_s,
    }


def load_outcomes(path: Path, plans: list[CallPlan]) -> dict[str, LiveOutcome]:
    """The `--outcomes` file by plan name (the last line of a plan wins); plans it names that
    are not among `plans` (another --calls/--seed) are an error."""
    by_name = {p.name: p for p in plans}
    found: dict[str, LiveOutcome] = {}
    if not path.exists():
        return found
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            progress(f"[live] {path}:{n}: unreadable line skipped (an interrupted write)")
            continue
        plan = by_name.get(row["plan"])
        if plan is None:
            raise SystemExit(
                f"{path}:{n}: call {row['plan']} is not in this evaluation set "
                f"(pass the --calls/--seed the file was made with)"
            )
        found[plan.name] = LiveOutcome(
            plan,
            row["external_id"],
            row["call_id"],
            row["status"],
            row["document"],
            [Segment(*s) for s in row["segments"]],
            row["duration_ms"],
            row["audio_s"],
            row["utterances"],
            row["shed"],
            row["late"],
            row["error"],
            float(row.get("wall_s") or 0.0),
        )
    return found


def _rows(cls: type[Any], items: list[dict[str, Any]] | None) -> tuple[Any, ...]:
    names = {f.name for f in fields(cls)}
    return tuple(cls(**{k: v for k, v in item.items() if k in names}) for item in items or ())


def result_from_document(doc: dict[str, Any] | None) -> ComplianceResult:
    """The stored compliance document (`jsonable(ComplianceResult)`) as the checker's own
    result, so it is scored by exactly the code that scores the offline checker; a missing
    document (no script for the call) scores as a call where nothing was heard."""
    doc = doc or {}
    return ComplianceResult(
        script=str(doc.get("script", "")),
        score=float(doc.get("score") or 0.0),
        passed=bool(doc.get("passed")),
        critical=bool(doc.get("critical")),
        stages=_rows(StageChecked, doc.get("stages")),
        forbidden=_rows(ForbiddenPhraseSaid, doc.get("forbidden")),
        order_violations=_rows(OrderViolated, doc.get("order_violations")),
        suspensions=_rows(RuleSuspended, doc.get("suspensions")),
        deductions=_rows(Deduction, doc.get("deductions")),
        duration_ms=int(doc.get("duration_ms") or 0),
    )


def verdict(
    result: ComplianceResult,
) -> tuple[frozenset[str], frozenset[str], frozenset[tuple[str, str]]]:
    """What the tally looks at: stages heard, forbidden rules said, order violations."""
    return (
        frozenset(r.stage for r in result.stages if r.heard),
        frozenset(f.rule for f in result.forbidden),
        frozenset((o.stage, o.expected_after) for o in result.order_violations),
    )


def script_language(book: ScriptBook, name: str) -> str:
    try:
        return book.get(name).language
    except ScriptNotFound:  # a running server with other scripts: go by the name
        return name.split("-")[0] if name else "?"


def collect(repo: Repository, out: LiveOutcome) -> bool:
    """Read the call back; True once it is finalised (not 'active', a 'finalised' row)."""
    detail = repo.get_call(out.external_id)
    if detail is None or detail.status == "active":
        return False
    final = next((t.seq for t in detail.trace if t.kind == "finalised"), None)
    if final is None:
        return False
    out.call_id, out.status = detail.call_id, detail.status
    out.duration_ms = detail.duration_ms or 0
    out.segments = [
        Segment(s.party, s.start_ms, s.end_ms, s.text, s.language or "") for s in detail.segments
    ]
    out.utterances = sum(t.kind in ("utterance", "asr_shed") for t in detail.trace)
    out.shed = sum(t.kind == "asr_shed" for t in detail.trace)
    out.late = sum(t.kind == "utterance" and t.seq > final for t in detail.trace)
    out.document = repo.get_analysis(detail.call_id).result("compliance")
    return True
