"""Analysis results (migration 0002) on SQLite and PostgreSQL: readings, findings, result
documents and scores are stored, read back in order, and idempotent under retried batches."""

from __future__ import annotations

import pytest

from storage.errors import BatchRejected
from storage.records import CallScored, FindingAdded, ReadingAdded, ResultSaved
from storage.repository import Repository
from tests.test_storage_repository import opened


def test_readings_findings_results_and_scores_round_trip(repo: Repository) -> None:
    batch = [
        opened("c1"),
        ReadingAdded("c1", "agent", 0, 0, 2000, {"snr_db": 24.5, "speech_level_dbov": -21.0}),
        ReadingAdded("c1", "customer", 0, 0, 2000, {"snr_db": None, "clip_ratio": 0.0}),
        ReadingAdded("c1", "agent", 1, 2000, 4000, {"snr_db": 25.0}),
        FindingAdded(
            "c1", 0, "conversation", "dead_air", "major", None, 5000, 12000, {"duration_ms": 7000}
        ),
        FindingAdded(
            "c1",
            1,
            "compliance",
            "phrase_matched",
            None,
            "agent",
            300,
            2100,
            {"stage": "greeting", "text": "您好，华信银行"},
        ),
        ResultSaved("c1", "quality_party", "agent", {"snr_db": 24.7}),
        ResultSaved("c1", "compliance", "", {"score": 80}),
        CallScored("c1", score=82.5, grade="good", quality_score=85.0, compliance_score=80.0),
    ]
    repo.apply(batch)
    repo.apply(batch[1:])  # a retried batch changes nothing
    repo.apply([ResultSaved("c1", "compliance", "", {"score": 90})])  # replaced, not added
    a = repo.get_analysis("c1")
    assert [(r.party, r.seq) for r in a.readings] == [("agent", 0), ("agent", 1), ("customer", 0)]
    assert a.readings[0].values == {"snr_db": 24.5, "speech_level_dbov": -21.0}
    assert a.readings[2].values["snr_db"] is None
    assert [f.kind for f in a.findings] == ["dead_air", "phrase_matched"]
    assert a.findings[1].data["text"] == "您好，华信银行"
    assert a.result("compliance") == {"score": 90}
    assert a.result("quality_party", "agent") == {"snr_db": 24.7}
    call = repo.get_call("c1")
    assert call is not None
    assert (call.score, call.grade, call.quality_score, call.compliance_score) == (
        82.5,
        "good",
        85.0,
        80.0,
    )


@pytest.mark.parametrize(
    "bad",
    [
        ReadingAdded("c1", "agent", 0, 500, 100),
        CallScored("c1", score=50, grade="B+"),
        CallScored("nope", score=50, grade="pass"),
        FindingAdded("c1", 0, "quality", "x", data={"v": object()}),
    ],
)
def test_bad_analysis_records_are_rejected(repo: Repository, bad: object) -> None:
    repo.apply([opened("c1")])
    with pytest.raises(BatchRejected):
        repo.apply([bad])  # type: ignore[list-item]
