"""What the board needs from the database, as a small protocol the composition root fills.

The board (`monitor.board`) knows only call events and its own feed entries: it never imports
`storage`. At start and whenever it fell behind the bus, the hub rebuilds its state from a
`BoardReader`: the calls still active (as the events that would have opened them and their
last lines), the unresolved alerts (as feed entries), and today's totals for the KPI strip.
`monitor.web.api.board_reader.RepositoryBoardReader` implements it over the repository.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from monitor.events import CallEvent


@dataclass
class DayTotals:
    """Today's finished calls (UTC day), totalled by the database."""

    handled: int = 0
    handle_ms: int = 0
    scored: int = 0
    compliance_sum: float = 0.0
    compliance_n: int = 0
    needs_improvement: int = 0


class BoardReader(Protocol):
    def active_call_events(self, lines_per_party: int) -> list[CallEvent]:
        """For each active call: a `CallStarted` and its last `2 * lines_per_party`
        `SegmentTranscribed` (seeds, numbered 0: not the call's own numbering)."""
        ...

    def open_alerts(self) -> list[dict[str, Any]]:
        """Unresolved alerts (open, acknowledged) as board feed entries, oldest id first."""
        ...

    def day_totals(self, start: datetime) -> DayTotals:
        """Totals of the calls that ended since `start`."""
        ...
