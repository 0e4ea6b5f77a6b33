"""A small, hand-checkable set of stored calls for the API tests (real records written
through `Repository.apply`, real WAV recordings on disk).

Period 2026-11-20 (UTC): c1..c4; c5 is a month earlier. KPI values in the tests are computed
by hand from the numbers below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from storage.recordings import wav_header
from storage.records import (
    AlertRaised,
    CallClosed,
    CallOpened,
    CallScored,
    Record,
    ResultSaved,
    SegmentAdded,
)
from storage.repository import Repository

DAY = datetime(2026, 11, 20, tzinfo=UTC)
RATE = 8000


@dataclass(frozen=True)
class Seed:
    call_id: str
    agent: str
    queue: str
    caller: str
    started: datetime
    duration_ms: int | None  # None: still active
    grade: str | None
    segments: tuple[tuple[str, int, int, str, str], ...]  # party, start, end, text, language
    conversation: dict[str, float | int | None] | None
    compliance_passed: bool | None
    alerts: tuple[tuple[str, str], ...]  # (kind, severity)


SEEDS = (
    Seed("c1", "a1", "billing", "+15550001", DAY + timedelta(hours=9), 60_000, "good",
         (("agent", 0, 2500, "Hello, thank you for calling Acme.", "en"),
          ("customer", 3000, 6000, "I want a REFUND please, 100 dollars", "en")),
         {"first_response_ms": 1200, "agent_talk_ratio": 0.6, "dead_air_total_ms": 3000,
          "duration_ms": 60_000}, True, (("duration_long", "warning"),)),
    Seed("c2", "a1", "cards", "+8613800000000", DAY + timedelta(hours=10), 120_000, "excellent",
         (("agent", 0, 2000, "您好，欢迎致电信用卡中心。", "zh"),
          ("customer", 2500, 5000, "我想办理信用卡退款", "zh")),
         {"first_response_ms": 800, "agent_talk_ratio": 0.5, "dead_air_total_ms": 0,
          "duration_ms": 120_000}, False, (("dead_air", "critical"),)),
    Seed("c3", "a2", "billing", "+15550003", DAY + timedelta(hours=11), 15_000,
         "needs_improvement", (("customer", 0, 2000, "我要查询账单", "zh"),),
         None, True, ()),
    Seed("c4", "a2", "cards", "+15550004", DAY + timedelta(hours=12), None, None, (), None,
         None, ()),
    Seed("c5", "a1", "billing", "+15550001", DAY - timedelta(days=30), 30_000, "pass",
         (("customer", 0, 1000, "refund", "en"),), None, None, ()),
)  # fmt: skip


def write_wav(path: Path, seconds: float, channels: int = 2) -> bytes:
    """A PCM16 recording laid out like WavRecorder's: 44-byte header, interleaved frames."""
    frames = int(seconds * RATE)
    rng = np.random.default_rng(7)
    pcm = rng.integers(-3000, 3000, size=frames * channels, dtype=np.int16).tobytes()
    data = wav_header(RATE, channels, len(pcm)) + pcm
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def seed(repo: Repository, recordings_dir: Path) -> None:
    records: list[Record] = []
    alert_id = 0
    for s in SEEDS:
        records.append(
            CallOpened(
                call_id=s.call_id, external_id=f"sw-{s.call_id}", started_at=s.started,
                protocol="audiofork", sample_rate=RATE, channels=2,
                recording_path=f"2026/11/20/{s.call_id}.wav",
                parties=(("customer", 0), ("agent", 1)), agent_id=s.agent, queue=s.queue,
                caller=s.caller, callee="+15559999", metadata={"campaign": "test"},
            )
        )  # fmt: skip
        for party, start, end, text, lang in s.segments:
            records.append(SegmentAdded(s.call_id, party, start, end, text, lang, 0.9, 400))
        if s.duration_ms is not None:
            records.append(
                CallClosed(s.call_id, s.started + timedelta(milliseconds=s.duration_ms),
                           "completed", "normal", s.duration_ms, s.duration_ms * RATE // 1000,
                           {"customer": s.duration_ms * 8, "agent": s.duration_ms * 8})
            )  # fmt: skip
        if s.conversation is not None:
            records.append(ResultSaved(s.call_id, "conversation", "", dict(s.conversation)))
        if s.compliance_passed is not None:
            records.append(ResultSaved(s.call_id, "compliance", "",
                                       {"script": "default", "passed": s.compliance_passed,
                                        "score": 90.0 if s.compliance_passed else 40.0,
                                        "stages": [], "forbidden": []}))  # fmt: skip
        if s.grade is not None:
            records.append(CallScored(s.call_id, 80.0, s.grade, 75.0, 85.0))
        for kind, severity in s.alerts:
            alert_id += 1
            records.append(
                AlertRaised(alert_id=alert_id, call_id=s.call_id, rule=kind, kind=kind,
                            severity=severity, raised_at=s.started + timedelta(seconds=30),
                            media_start_ms=20_000, media_end_ms=30_000,
                            message=f"{kind} on {s.call_id}", evidence={"value": 1},
                            agent_id=s.agent, queue=s.queue)
            )  # fmt: skip
    repo.apply(records)
    write_wav(recordings_dir / "2026/11/20/c1.wav", 2.0)
