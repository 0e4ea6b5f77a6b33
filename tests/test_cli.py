"""`callwatch calls` and `show` on a real SQLite database (issue 19 item 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main as cli_main
from storage.records import FindingAdded, ResultSaved
from storage.repository import Repository
from tests.api_data import seed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    repo = Repository.from_url(f"sqlite:///{tmp_path / 'callwatch.db'}")
    repo.upgrade()
    seed(repo, tmp_path / "recordings")
    repo.apply([
        ResultSaved("c1", "quality", "", {"score": 43.0, "grade": "needs_improvement",
                                         "findings": []}),
        ResultSaved("c1", "scorecard", "", {"score": 70.0, "grade": "pass", "lines": [],
                                           "caps": [], "quality_weight": 0.4}),
        FindingAdded("c1", 0, "quality", "dropouts", "critical", "agent", 0, 1000, {"v": 1}),
    ])  # fmt: skip
    repo.close()
    return tmp_path


def test_show_json_has_compliance_quality_findings_and_scorecard(
    data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["show", "c1", "--json", "--data-dir", str(data_dir)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["call_id"] == "c1"
    assert doc["compliance"]["passed"] is True
    assert doc["quality"]["call"]["score"] == 43.0 and doc["quality"]["conversation"]
    assert doc["scorecard"]["grade"] == "pass"
    assert [f["kind"] for f in doc["findings"]] == ["dropouts"]
    assert "alerts" in doc and "readings" not in doc


def test_calls_into_a_closed_pipe_ends_quietly(data_dir: Path) -> None:
    """`callwatch calls | head`: the reader goes away; no BrokenPipeError traceback."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    for args in (["calls"], ["calls", "--json"], ["show", "c1"]):
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.cli", *args, "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `head` exiting before the first line is written
        err = proc.stderr.read().decode()
        proc.stderr.close()
        assert proc.wait(timeout=60) == 0, err
        assert "Traceback" not in err and "BrokenPipe" not in err, err
