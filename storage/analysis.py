"""Analysis results of a call: writing and reading quality readings, findings, call-level
result documents and scores (the tables of migration 0002).

Kept apart from `repository.py`, which owns calls, parties, transcripts and the trace; the
repository dispatches these records here inside its transaction. Every write is idempotent
for a retried batch: readings and findings are keyed by their per-call sequence numbers
(inserts skip existing keys), results are replaced by (kind, party), scores overwrite.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection, Table, delete, select, update
from sqlalchemy.orm import Session

from storage.errors import BatchRejected
from storage.models import CallResultRow, FindingRow, QualityReadingRow
from storage.records import CallScored, FindingAdded, ReadingAdded, ResultSaved

_READINGS: Table = QualityReadingRow.__table__  # type: ignore[assignment]
_FINDINGS: Table = FindingRow.__table__  # type: ignore[assignment]
_RESULTS: Table = CallResultRow.__table__  # type: ignore[assignment]
GRADES = ("excellent", "good", "pass", "needs_improvement")


@dataclass(frozen=True, slots=True)
class ReadingInfo:
    party: str
    seq: int
    start_ms: int
    end_ms: int
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FindingInfo:
    seq: int
    source: str
    kind: str
    severity: str | None
    party: str | None
    start_ms: int | None
    end_ms: int | None
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CallAnalysis:
    readings: tuple[ReadingInfo, ...]  # by (party, seq)
    findings: tuple[FindingInfo, ...]  # by seq
    results: dict[str, dict[str, dict[str, Any]]]  # kind -> party ("" = call) -> document

    def result(self, kind: str, party: str = "") -> dict[str, Any] | None:
        return self.results.get(kind, {}).get(party)

    def document(self, readings: bool = False) -> dict[str, Any]:
        """Quality, compliance, scorecard and findings (and the readings on request), as the
        API's call detail and `callwatch show --json` carry them."""
        doc: dict[str, Any] = {
            "quality": {
                "call": self.result("quality"),
                "by_party": self.results.get("quality_party", {}),
                "conversation": self.result("conversation"),
            },
            "compliance": self.result("compliance"),
            "scorecard": self.result("scorecard"),  # every deduction and grade cap
            "findings": [asdict(f) for f in self.findings],
        }
        if readings:
            doc["readings"] = [asdict(r) for r in self.readings]
        return doc


def problem(rec: object) -> str | None:
    """Why a record cannot be stored, checked before the transaction; None if fine."""
    if isinstance(rec, ReadingAdded) and not 0 <= rec.start_ms <= rec.end_ms:
        return f": need 0 <= start_ms <= end_ms, got {rec.start_ms}..{rec.end_ms}"
    if isinstance(rec, CallScored) and rec.grade is not None and rec.grade not in GRADES:
        return f".grade must be one of {GRADES}, got {rec.grade!r}"
    if isinstance(rec, ResultSaved) and not rec.kind:
        return ".kind must not be empty"
    return None


def documents(rec: object) -> dict[str, dict[str, Any]]:
    """The JSON documents of a record, for the repository's JSON check."""
    if isinstance(rec, ReadingAdded):
        return {"values": rec.values}
    if isinstance(rec, FindingAdded | ResultSaved):
        return {"data": rec.data}
    return {}


def write(conn: Connection, run: list[Any], insert_new: Any) -> None:
    """Write a run of records of one analysis kind (called by Repository.apply)."""
    first = run[0]
    if isinstance(first, ReadingAdded):
        rows = [
            {
                "call_id": r.call_id,
                "party": r.party,
                "seq": r.seq,
                "start_ms": r.start_ms,
                "end_ms": r.end_ms,
                "values": r.values,
            }
            for r in run
        ]
        insert_new(conn, _READINGS, ["call_id", "party", "seq"], rows)
    elif isinstance(first, FindingAdded):
        rows = [
            {name: getattr(r, name) for name in (
                "call_id", "seq", "source", "kind", "severity", "party", "start_ms", "end_ms",
                "data")}
            for r in run
        ]  # fmt: skip
        insert_new(conn, _FINDINGS, ["call_id", "seq"], rows)
    elif isinstance(first, ResultSaved):
        for r in run:
            conn.execute(
                delete(_RESULTS).where(
                    _RESULTS.c.call_id == r.call_id,
                    _RESULTS.c.kind == r.kind,
                    _RESULTS.c.party == r.party,
                )
            )
            conn.execute(
                _RESULTS.insert(),
                {"call_id": r.call_id, "kind": r.kind, "party": r.party, "data": r.data},
            )
    elif isinstance(first, CallScored):
        from storage.models import Call

        calls: Table = Call.__table__  # type: ignore[assignment]
        for r in run:
            result = conn.execute(
                update(calls)
                .where(calls.c.id == r.call_id)
                .values(
                    score=r.score,
                    grade=r.grade,
                    quality_score=r.quality_score,
                    compliance_score=r.compliance_score,
                )
            )
            if result.rowcount == 0:
                raise BatchRejected(f"CallScored for unknown call {r.call_id!r}")


def load(session: Session, call_id: str) -> CallAnalysis:
    readings = session.scalars(
        select(QualityReadingRow)
        .where(QualityReadingRow.call_id == call_id)
        .order_by(QualityReadingRow.party, QualityReadingRow.seq)
    )
    findings = session.scalars(
        select(FindingRow).where(FindingRow.call_id == call_id).order_by(FindingRow.seq)
    )
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for row in session.scalars(select(CallResultRow).where(CallResultRow.call_id == call_id)):
        results.setdefault(row.kind, {})[row.party] = dict(row.data)
    return CallAnalysis(
        readings=tuple(
            ReadingInfo(r.party, r.seq, r.start_ms, r.end_ms, dict(r.values)) for r in readings
        ),
        findings=tuple(
            FindingInfo(
                f.seq, f.source, f.kind, f.severity, f.party, f.start_ms, f.end_ms, dict(f.data)
            )
            for f in findings
        ),
        results=results,
    )
