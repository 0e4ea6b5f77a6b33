"""The pipeline's capacity of record, and the check that a commit does not regress it.

RELIABILITY.md L2: the largest number of real-time calls the full pipeline (the real Whisper
model) serves within its latency bound is recorded in a benchmark file, and must not fall by
more than 10 % between commits. `scripts/bench` finds that number (levels double until one
fails, then bisect); this module owns the record file (`docs/capacity-record.json`), reading
it, writing it (`scripts/bench --record`) and judging a new run against it
(`scripts/bench --check-record`). Pure functions: the bench does the I/O around them.

A capacity is only comparable with one taken on the same kind of box (core count) against the
same latency bound: anything else is refused as "not comparable", never passed or failed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

#: A run may reach this share of the recorded capacity before it counts as a regression.
TOLERANCE = 0.10


class RecordError(ValueError):
    """The record file is missing, unreadable or malformed; the message says which."""


@dataclass(frozen=True, slots=True)
class CapacityRecord:
    calls: int  # the largest level that passed
    slo_s: float  # the latency p95 bound it passed against
    cores: int  # os.cpu_count() of the box
    commit: str
    date: str  # ISO date of the run
    note: str = ""  # the box and conditions, in words


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str  # "ok", "regressed" or "not comparable"
    message: str

    @property
    def exit_code(self) -> int:
        return {"ok": 0, "regressed": 3}.get(self.status, 4)


def load_record(path: Path) -> CapacityRecord:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecordError(f"no capacity record at {path}: write one with --record") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise RecordError(f"cannot read the capacity record {path}: {exc}") from None
    try:
        record = CapacityRecord(**raw)
    except TypeError as exc:
        raise RecordError(f"{path} is not a capacity record: {exc}") from None
    if not isinstance(record.calls, int) or record.calls < 1:
        raise RecordError(f"{path}: calls must be a positive integer, not {record.calls!r}")
    return record


def write_record(path: Path, record: CapacityRecord) -> None:
    path.write_text(json.dumps(asdict(record), indent=1) + "\n", encoding="utf-8")


def judge(record: CapacityRecord, calls: int, *, slo_s: float, cores: int | None) -> Verdict:
    """A run's capacity (`calls` at `slo_s` on a box of `cores`) against the record."""
    if cores != record.cores or abs(slo_s - record.slo_s) > 1e-9:
        return Verdict(
            "not comparable",
            f"the record was taken on a {record.cores}-core box at p95 <= {record.slo_s:g} s; "
            f"this run is {cores} cores at p95 <= {slo_s:g} s. Record this box's capacity "
            "with --record, or run with the record's --slo",
        )
    floor = record.calls * (1 - TOLERANCE)
    figures = f"{calls} calls at p95 <= {slo_s:g} s against {record.calls} recorded"
    where = f"({record.commit}, {record.date})"
    if calls < floor:
        return Verdict(
            "regressed",
            f"capacity regressed: {figures} {where}, more than {TOLERANCE:.0%} below. "
            "Find the commit with a bisect over scripts/bench --skip-engine --levels N",
        )
    return Verdict("ok", f"capacity holds: {figures} {where}")
