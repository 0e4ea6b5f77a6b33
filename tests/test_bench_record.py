"""RELIABILITY.md L2's regression check: the capacity of record and the verdict on a new run
(scripts/bench_record.py; `scripts/bench --check-record` / `--record` run it after the level
search). The capacity itself is measured by scripts/bench with the real model, not here."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench_record

    return bench_record


def test_the_committed_record_is_readable_and_names_its_run(rec: ModuleType) -> None:
    record = rec.load_record(SCRIPTS.parent / "docs" / "capacity-record.json")
    assert record.calls >= 1 and record.slo_s == 1.5 and record.cores >= 1
    assert record.commit and record.date.startswith("20")


@pytest.mark.parametrize(
    ("calls", "status", "code"),
    [(12, "ok", 0), (14, "ok", 0), (11, "ok", 0), (10, "regressed", 3), (0, "regressed", 3)],
)
def test_more_than_ten_percent_below_the_record_is_a_regression(
    rec: ModuleType, calls: int, status: str, code: int
) -> None:
    record = rec.CapacityRecord(calls=12, slo_s=1.5, cores=2, commit="abc1234", date="2026-12-07")
    verdict = rec.judge(record, calls, slo_s=1.5, cores=2)
    assert (verdict.status, verdict.exit_code) == (status, code)
    assert f"{calls} calls" in verdict.message and "12 recorded" in verdict.message


@pytest.mark.parametrize(("slo_s", "cores"), [(1.0, 2), (1.5, 16), (1.5, None)])
def test_another_box_or_bound_is_not_comparable(
    rec: ModuleType, slo_s: float, cores: int | None
) -> None:
    record = rec.CapacityRecord(calls=12, slo_s=1.5, cores=2, commit="abc1234", date="2026-12-07")
    verdict = rec.judge(record, 1, slo_s=slo_s, cores=cores)
    assert (verdict.status, verdict.exit_code) == ("not comparable", 4)
    assert "--record" in verdict.message


def test_a_written_record_reads_back(rec: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "capacity.json"
    record = rec.CapacityRecord(calls=9, slo_s=1.5, cores=2, commit="abc1234", date="2026-12-07")
    rec.write_record(path, record)
    assert rec.load_record(path) == record


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (None, "write one with --record"),
        ("{not json", "cannot read"),
        (json.dumps({"calls": 3}), "not a capacity record"),
        (json.dumps({"calls": 0, "slo_s": 1.5, "cores": 2, "commit": "x", "date": "d"}),
         "positive integer"),
    ],
)  # fmt: skip
def test_a_bad_record_says_what_to_fix(
    rec: ModuleType, tmp_path: Path, content: str | None, says: str
) -> None:
    path = tmp_path / "capacity.json"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(rec.RecordError, match=says):
        rec.load_record(path)


def test_the_check_needs_the_level_search(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(SCRIPTS))
    import bench

    assert bench.parse_args(["--skip-engine", "--check-record"]).check_record == bench.RECORD_PATH
    with pytest.raises(SystemExit):
        bench.parse_args(["--skip-engine", "--levels", "4", "--check-record"])
