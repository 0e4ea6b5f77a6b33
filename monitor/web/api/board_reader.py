"""The board's `BoardReader` over the repository (the composition side of `monitor.board`,
which itself never imports storage): active calls as seed events, unresolved alerts as
feed entries, today's totals."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from monitor.board.source import BoardReader, DayTotals
from monitor.events import CallEvent, CallStarted, SegmentTranscribed
from storage.models import AlertInfo
from storage.repository import Repository


def alert_entry(info: AlertInfo) -> dict[str, Any]:
    """The board feed entry for an alert read from the database."""
    return {
        "id": int(info.id),
        "call_id": info.call_id,
        "rule": info.rule,
        "kind": info.kind,
        "severity": info.severity,
        "state": info.state,
        "message": info.message,
        "party": info.party,
        "media_start_ms": info.media_start_ms,
        "raised_at": info.raised_at.isoformat(),
        "agent_id": info.agent_id,
        "queue": info.queue,
        "by": info.resolved_by or info.acknowledged_by,
    }


class RepositoryBoardReader(BoardReader):
    def __init__(self, repo: Repository) -> None:
        self._repo = repo

    def active_call_events(self, lines_per_party: int) -> list[CallEvent]:
        out: list[CallEvent] = []
        for call in self._repo.active_calls():
            d = self._repo.get_call(call.call_id)
            if d is None:
                continue
            out.append(
                CallStarted(d.call_id, 0, 0, d.started_at, d.external_id, d.protocol,
                            d.sample_rate, d.channels, d.recording_path,
                            tuple((p.party, p.channel) for p in d.parties),
                            agent_id=d.agent_id, queue=d.queue, caller=d.caller)
            )  # fmt: skip
            for s in d.segments[-2 * lines_per_party :]:
                out.append(
                    SegmentTranscribed(d.call_id, 0, s.start_ms, d.started_at, s.party,
                                       s.start_ms, s.end_ms, s.text, s.language, s.confidence)
                )  # fmt: skip
        return out

    def open_alerts(self) -> list[dict[str, Any]]:
        alerts: list[AlertInfo] = []
        for state in ("open", "acknowledged"):
            alerts.extend(self._repo.list_alerts(state=state, limit=50))
        return [alert_entry(a) for a in sorted(alerts, key=lambda a: a.id)]

    def day_totals(self, start: datetime) -> DayTotals:
        t = self._repo.day_totals(start)
        return DayTotals(t.handled, t.handle_ms, t.scored, t.compliance_sum, t.compliance_n,
                         t.needs_improvement)  # fmt: skip
