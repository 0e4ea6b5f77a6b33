"""The live call board's state: sans-I/O, fed with bus events, read as snapshots and deltas.

`BoardState.apply(event, now)` folds one bus event (`monitor.events`: a live call's, or an
alert) into the card of its call and into the KPI strip; nothing is sent from here.
`BoardState.flush(now)` returns the messages to broadcast: each changed call's whole card at
most once per `interval_s` (so a call that produces twenty readings and segments a second costs
the browsers four small messages, and 100 live calls stay smooth), the KPIs when they changed,
alert feed entries as they happen, and the removal of calls that ended `linger_s` ago.
`snapshot(now)` is everything a (re)connecting browser needs to redraw the board from scratch.

`now` is a monotonic clock in seconds for the coalescing; wall-clock times come from the events
themselves (UTC), so tests drive the state with plain numbers.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, date, datetime
from typing import Any

from monitor.board.cards import CallCard, Day, PartyMeters
from monitor.events import (
    AlertChanged,
    AlertRaised,
    CallEnded,
    CallEvent,
    CallFinalised,
    CallScored,
    CallStarted,
    FindingMade,
    FindingSource,
    Marked,
    ReadingTaken,
    SegmentTranscribed,
    TraceKind,
)
from monitor.qa.events import PhraseMatched, PhraseMissed

#: The checklist shown before any compliance event arrived (more stages appear as seen).
DEFAULT_CHECKLIST = ("greeting", "verification", "closing")
_OPEN_ALERT_STATES = ("open", "acknowledged")
#: A call whose gateway node died (scale-out): the board drops it at once with this reason.
NODE_LOST = "node_lost"


def alert_raised(ev: AlertRaised) -> dict[str, Any]:
    """The feed entry for an AlertRaised event (an open alert)."""
    return {
        "id": int(ev.alert_id),
        "call_id": ev.call_id,
        "rule": ev.rule,
        "kind": ev.kind,
        "severity": ev.severity,
        "state": "open",
        "message": ev.message,
        "party": ev.party,
        "media_start_ms": ev.media_start_ms,
        "raised_at": _iso(ev.at),
        "agent_id": ev.agent_id,
        "queue": ev.queue,
        "by": None,
    }


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class BoardState:
    def __init__(
        self,
        *,
        interval_s: float = 0.3,
        linger_s: float = 8.0,
        verdict_wait_s: float = 3600.0,
        lines_per_party: int = 3,
        checklist: tuple[str, ...] = DEFAULT_CHECKLIST,
        feed_size: int = 50,
        today: date | None = None,
    ) -> None:
        self.interval_s = interval_s
        self.linger_s = linger_s
        #: An ended call whose verdict never comes (it failed) leaves after this long.
        self.verdict_wait_s = verdict_wait_s
        self._lines = lines_per_party
        self._checklist = checklist
        self.calls: dict[str, CallCard] = {}
        self.alerts: dict[int, dict[str, Any]] = {}  # open + acknowledged, and recent others
        self._feed: deque[int] = deque(maxlen=feed_size)
        self._dirty: set[str] = set()
        self._sent_at: dict[str, float] = {}
        #: Cards whose alerts changed: sent in the same frame as the alert, rate limit or not,
        #: so the feed and the card's badge never disagree (alerts are rare; cards are not).
        self._urgent: set[str] = set()
        self._pending_alerts: list[dict[str, Any]] = []
        #: Calls taken off at once, with why (scale-out: their node was lost).
        self._pending_removals: list[dict[str, Any]] = []
        self._kpi_dirty = True
        self._kpi_sent_at = float("-inf")
        self._day = Day(day=today or datetime.now(UTC).date())
        self.seq = 0  # messages flushed so far (a client sees gaps after a resync)

    # ------------------------------------------------------------------ input
    def apply(self, event: CallEvent, now: float) -> None:
        """Fold one bus event in; events of unknown calls (opened before we started) and of
        unknown types are ignored, except that alerts always reach the feed."""
        if isinstance(event, AlertRaised):
            self.put_alert(alert_raised(event))
            return
        if isinstance(event, AlertChanged):
            self._alert_changed(event)
            return
        if isinstance(event, CallStarted):
            self._open(event)
            return
        card = self.calls.get(event.call_id)
        if card is None:
            return
        if isinstance(event, CallFinalised) and event.end_reason == NODE_LOST:
            self._drop(card, event.end_reason)
            return
        changed = self._apply_to_card(card, event, now)
        if changed:
            self._dirty.add(card.call_id)

    def _drop(self, card: CallCard, reason: str) -> None:
        """Take a call off the board now, saying why (its node died: scale-out). It counts
        as handled, interrupted, for today's KPIs."""
        if card.ended_at is None:
            now = datetime.now(UTC)
            card.ended_at, card.status = now, "interrupted"
            self._roll_day(now.date())
            self._day.handled += 1
            self._kpi_dirty = True
        del self.calls[card.call_id]
        self._dirty.discard(card.call_id)
        self._sent_at.pop(card.call_id, None)
        self._pending_removals.append({"type": "remove", "call_id": card.call_id, "reason": reason})

    def _open(self, ev: CallStarted) -> None:
        parties = {
            name: PartyMeters(lines=deque(maxlen=self._lines)) for name, _ in ev.parties
        } or {p: PartyMeters(lines=deque(maxlen=self._lines)) for p in ("customer", "agent")}
        self.calls[ev.call_id] = CallCard(
            call_id=ev.call_id,
            external_id=ev.external_id,
            started_at=ev.at,
            agent=ev.agent_id,
            queue=ev.queue,
            caller=ev.caller,
            parties=parties,
            # Without the agent's audio the agent's script is not checked (monitor.core.analysis)
            checklist={} if "agent" not in parties else dict.fromkeys(self._checklist, "pending"),
            no_agent_leg="agent" not in parties,
        )
        self._dirty.add(ev.call_id)
        self._kpi_dirty = True

    def _party(self, card: CallCard, party: str | None) -> PartyMeters | None:
        if party is None:
            return None
        if party not in card.parties:
            card.parties[party] = PartyMeters(lines=deque(maxlen=self._lines))
        return card.parties[party]

    def _apply_to_card(self, card: CallCard, ev: CallEvent, now: float) -> bool:
        if isinstance(ev, SegmentTranscribed):
            p = self._party(card, ev.party)
            if p is None or not ev.text.strip():
                return False
            line = {"start_ms": ev.start_ms, "end_ms": ev.end_ms, "text": ev.text}
            if ev.late:
                line["late"] = True  # transcribed off the live path (overload catch-up)
            if line in p.lines:
                return False
            p.lines.append(line)
            card.media_ms = max(card.media_ms, ev.end_ms)
        elif isinstance(ev, ReadingTaken):
            r = ev.reading
            p = self._party(card, r.party)
            if p is None:
                return False
            p.level_dbov = _num(r.speech_level_dbov, _num(r.rms_dbov))
            p.snr_db = _num(r.snr_db, p.snr_db)
            p.clarity = _num(r.dnsmos_ovrl, p.clarity)
            p.talk_ms = int(r.talk_ms or p.talk_ms)  # a running total, not a delta
            card.media_ms = max(card.media_ms, r.end_ms)
        elif isinstance(ev, FindingMade):
            return self._finding(card, ev)
        elif isinstance(ev, Marked):
            paused = (TraceKind.CAPTURE_PAUSED, TraceKind.CAPTURE_RESUMED)
            if ev.kind in paused:  # PCI pause: board says so
                card.status = "paused" if ev.kind is TraceKind.CAPTURE_PAUSED else "active"
                return True
            if ev.kind is TraceKind.FORMAT_SUSPECT:  # the stream may be read in the wrong format
                reasons = ev.data.get("reasons")
                new = [str(r) for r in reasons] if isinstance(reasons, list) else []
                # content, then pace: reasons accumulate
                card.format_suspect += [r for r in new if r not in card.format_suspect]
                return True
            if ev.kind is not TraceKind.DEAD_AIR_STARTED:
                return False
            card.dead_air_now = True  # until its dead_air finding says it ended
            if ev.media_ms is not None:
                card.media_ms = max(card.media_ms, ev.media_ms)
        elif isinstance(ev, CallScored):
            card.score, card.grade = ev.score, ev.grade
            self._score_today(ev)
        elif isinstance(ev, CallEnded | CallFinalised):
            self._close(card, ev, now)
        else:
            return False
        return True

    def _finding(self, card: CallCard, ev: FindingMade) -> bool:
        if ev.kind == "dead_air" and ev.start_ms is not None and ev.end_ms is not None:
            card.dead_air_ms += ev.end_ms - ev.start_ms
            card.dead_air_count += 1
            card.dead_air_now = False
            return True
        if ev.source is not FindingSource.COMPLIANCE:
            return False
        d = ev.detail
        if isinstance(d, PhraseMatched):
            card.checklist[d.stage] = "ok"
            return True
        if isinstance(d, PhraseMissed) and card.checklist.get(d.stage) != "ok":
            # An optional stage not said is no failure: grey "not said", not a red cross.
            card.checklist[d.stage] = "missed" if d.required else "not_said"
            return True
        return False

    def _close(self, card: CallCard, ev: CallEnded | CallFinalised, now: float) -> None:
        """CallEnded (hang-up) takes the call off the active list at once; its card stays
        (marked "transcripts pending" while any are) until CallFinalised (the verdict, and its
        score for the KPIs) starts the linger, or `verdict_wait_s` passed without one. A
        CallFinalised after a CallEnded only does that (the call was counted)."""
        hung_up = isinstance(ev, CallEnded)
        card.transcripts_pending = isinstance(ev, CallEnded) and ev.transcripts_pending > 0
        card.ended_mono = now - self.linger_s + self.verdict_wait_s if hung_up else now
        if card.ended_at is not None:
            return
        ended_at = ev.at if isinstance(ev, CallEnded) else ev.ended_at
        card.ended_at, card.status, card.end_reason = ended_at, ev.status, ev.end_reason
        card.duration_ms = ev.duration_ms
        card.dead_air_now = False
        self._roll_day(ended_at.date())
        if ended_at.date() == self._day.day:
            self._day.handled += 1
            self._day.handle_ms += ev.duration_ms
        self._kpi_dirty = True

    def _score_today(self, ev: CallScored) -> None:
        self._day.scored += 1
        if ev.compliance_score is not None:
            self._day.compliance_sum += ev.compliance_score
            self._day.compliance_n += 1
        if ev.grade == "needs_improvement":
            self._day.needs_improvement += 1
        self._kpi_dirty = True

    def _roll_day(self, day: date) -> None:
        if day > self._day.day:
            self._day = Day(day=day)

    def _alert_changed(self, ev: AlertChanged) -> None:
        known = self.alerts.get(int(ev.alert_id))
        alert = (
            dict(known)
            if known
            else {
                "id": int(ev.alert_id),
                "call_id": ev.call_id,
                "rule": None,
                "kind": None,
                "severity": "warning",
                "message": "",
                "party": None,
                "media_start_ms": None,
                "raised_at": None,
                "agent_id": None,
                "queue": None,
            }
        )
        alert.update(state=ev.state, by=ev.by, changed_at=_iso(ev.at))
        self.put_alert(alert)

    def put_alert(self, alert: dict[str, Any], *, announce: bool = True) -> None:
        """Add or update an alert (feed, its call's badge, KPIs); `announce` sends it to the
        browsers as an alert message (not for alerts loaded into a fresh snapshot)."""
        self.alerts[alert["id"]] = alert
        if alert["id"] in self._feed:
            self._feed.remove(alert["id"])
        self._feed.append(alert["id"])
        for old in list(self.alerts):  # keep what the feed shows, and every unresolved alert
            a = self.alerts[old]
            if old not in self._feed and a["state"] not in _OPEN_ALERT_STATES:
                del self.alerts[old]
        card = self.calls.get(alert["call_id"] or "")
        if card is not None:
            # who the alert is about, for the feed, even once the card has gone
            alert.setdefault("caller", card.caller)
            alert.setdefault("external_id", card.external_id)
            card.alerts[alert["id"]] = {
                k: alert[k] for k in ("id", "kind", "severity", "state", "media_start_ms")
            }
            self._dirty.add(card.call_id)
            self._urgent.add(card.call_id)
        if announce:
            self._pending_alerts.append(alert)
        self._kpi_dirty = True

    # ------------------------------------------------------------------ output
    def kpis(self) -> dict[str, Any]:
        d = self._day
        return {
            "day": d.day.isoformat(),
            "active_calls": sum(1 for c in self.calls.values() if c.ended_at is None),
            "avg_handle_ms": round(d.handle_ms / d.handled) if d.handled else None,
            "handled_today": d.handled,
            "open_alerts": sum(1 for a in self.alerts.values() if a["state"] == "open"),
            "compliance_rate": round(d.compliance_sum / d.compliance_n, 1)
            if d.compliance_n
            else None,
            "needs_improvement": d.needs_improvement,
        }

    def snapshot(self) -> dict[str, Any]:
        """The whole board, for a browser that (re)connects."""
        return {
            "type": "snapshot",
            "seq": self.seq,
            "calls": [c.to_json() for c in self.calls.values()],
            "kpis": self.kpis(),
            "alerts": [self.alerts[i] for i in self._feed if i in self.alerts],
            "interval_ms": round(self.interval_s * 1000),
        }

    def flush(self, now: float) -> list[dict[str, Any]]:
        """Messages due now. A call's card goes out at most once per `interval_s`; one that
        changed again sooner stays dirty until its turn (coalescing, never dropping)."""
        out: list[dict[str, Any]] = []
        for alert in self._pending_alerts:
            out.append({"type": "alert", "alert": alert})
        self._pending_alerts.clear()
        out.extend(self._pending_removals)
        self._pending_removals.clear()
        for call_id in sorted(self._dirty):
            card = self.calls.get(call_id)
            if card is None:
                self._dirty.discard(call_id)
                self._urgent.discard(call_id)
                continue
            urgent = call_id in self._urgent
            if not urgent and now - self._sent_at.get(call_id, float("-inf")) < self.interval_s:
                continue
            self._urgent.discard(call_id)
            self._dirty.discard(call_id)
            self._sent_at[call_id] = now
            out.append({"type": "call", "call": card.to_json()})
        for call_id, card in list(self.calls.items()):
            if card.ended_mono is not None and now - card.ended_mono >= self.linger_s:
                if call_id in self._dirty:
                    continue  # its last card first
                del self.calls[call_id]
                self._sent_at.pop(call_id, None)
                out.append({"type": "remove", "call_id": call_id})
                self._kpi_dirty = True
        if self._kpi_dirty and now - self._kpi_sent_at >= self.interval_s:
            self._kpi_dirty = False
            self._kpi_sent_at = now
            out.append({"type": "kpis", "kpis": self.kpis()})
        for msg in out:
            self.seq += 1
            msg["seq"] = self.seq
        return out

    def seed_today(
        self,
        *,
        handled: int,
        handle_ms: int,
        compliance_sum: float,
        compliance_n: int,
        needs_improvement: int,
        scored: int,
    ) -> None:
        """Start today's KPIs from what the database already holds (at startup)."""
        d = self._day
        d.handled, d.handle_ms, d.scored = handled, handle_ms, scored
        d.compliance_sum, d.compliance_n = compliance_sum, compliance_n
        d.needs_improvement = needs_improvement
        self._kpi_dirty = True


def _num(value: Any, default: float | None = None) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return round(float(value), 1)
    return default
