"""The board's cards: one per call (its parties' meters and lines, checklist, dead air,
alerts, outcome) and today's totals for the KPI strip. Plain data; `BoardState` fills them."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from audio_quality.conversation import talk_share
from monitor.board.source import DayTotals


@dataclass
class PartyMeters:
    """One party's latest measures and transcript lines."""

    lines: deque[dict[str, Any]]
    level_dbov: float | None = None
    snr_db: float | None = None
    clarity: float | None = None  # DNSMOS OVRL (1..5), when the call has it
    #: talk so far as the call's conversation tracker counts it (the stored ratio's input)
    talk_ms: int = 0

    def to_json(self, total_talk_ms: int) -> dict[str, Any]:
        ratio = talk_share(self.talk_ms, total_talk_ms)
        return {
            "lines": list(self.lines),
            "level_dbov": self.level_dbov,
            "snr_db": self.snr_db,
            "clarity": self.clarity,
            "talk_ratio": None if ratio is None else round(ratio, 3),
        }


@dataclass
class CallCard:
    call_id: str
    external_id: str
    started_at: datetime
    agent: str | None
    queue: str | None
    caller: str | None
    parties: dict[str, PartyMeters]
    checklist: dict[str, str]  # stage -> "pending" | "ok" | "missed" | "not_said" (optional)
    alerts: dict[int, dict[str, Any]] = field(default_factory=dict)
    media_ms: int = 0
    dead_air_ms: int = 0
    dead_air_count: int = 0
    dead_air_now: bool = False  # a dead-air stretch has started and not ended yet
    ended_at: datetime | None = None
    status: str = "active"
    end_reason: str | None = None  # why an interrupted call ended ("transport", "stalled" ...)
    duration_ms: int | None = None
    score: float | None = None
    grade: str | None = None
    ended_mono: float | None = None
    format_suspect: list[str] = field(default_factory=list)  # why the audio format looks wrong
    no_agent_leg: bool = False  # the agent's audio is not streamed: no script is checked
    #: Hung up, but transcripts (and so the verdict) are still to come.
    transcripts_pending: bool = False

    def to_json(self) -> dict[str, Any]:
        total = sum(p.talk_ms for p in self.parties.values())
        return {
            "call_id": self.call_id,
            "external_id": self.external_id,
            "started_at": self.started_at.isoformat(),
            "agent": self.agent,
            "queue": self.queue,
            "caller": self.caller,
            "media_ms": self.media_ms,
            "parties": {name: p.to_json(total) for name, p in self.parties.items()},
            "dead_air": {
                "total_ms": self.dead_air_ms,
                "count": self.dead_air_count,
                "now": self.dead_air_now,
            },
            "checklist": [{"stage": s, "state": v} for s, v in self.checklist.items()],
            "alerts": sorted(self.alerts.values(), key=lambda a: a["id"]),
            "status": self.status,
            "end_reason": self.end_reason,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            "duration_ms": self.duration_ms,
            "score": self.score,
            "grade": self.grade,
            "format_suspect": self.format_suspect,
            "no_agent_leg": self.no_agent_leg,
            "transcripts_pending": self.transcripts_pending,
        }


@dataclass
class Day(DayTotals):
    """Today's finished calls, for the KPI strip (reset at UTC midnight)."""

    day: date = date.min
