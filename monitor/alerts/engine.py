"""The alert rules (sans-I/O): call events and media-time ticks in, `Alert`s out.

The engine sees the live calls' events (`monitor.events`, from the event bus) and, for
running calls, a `MediaTick` every fraction of a second (the call's media position and the
shell's wall clock). No clock, no I/O, no database: the shell owns those, so tests drive it
with a clock they control.

Rules (thresholds per queue, `config.settings.AlertRuleSettings`):

* `duration_long:limit` / `duration_long:learned` - a running call passes the fixed limit or
  its queue's / agent's learned upper bound (checked on every tick, so within one tick of
  media time; also at the end, should ticks have missed it).
* `duration_short:limit` / `duration_short:learned` - a completed call ended below the fixed
  minimum or the learned lower bound.
* `dead_air` - silence between the parties for `dead_air_s`: while it lasts (from the
  conversation tracker's `DEAD_AIR_STARTED` mark and ticks), or from the finished finding.
* `poor_audio:<party>` - consecutive readings of one party below the SNR / above the clipping
  or dropout limits for `poor_audio_s` of media; `quality:<kind>:<party>` - end-of-call
  quality findings of high severity.
* `compliance_miss:<stage>`, `compliance_order:<stage>`, `forbidden_phrase:<rule>` - from
  compliance findings at or above `compliance_min_severity`.
* `asr_lag:latency` / `asr_lag:shed` - a transcript later than `asr_latency_s`, or `asr_shed`
  utterances dropped unrecognised in one call (shed, or given up after
  `asr.utterance_timeout_s`: a hung model).
* `media_stalled` - a connected call's media position did not move for `media_stall_s` of
  wall time, or fell that far behind the wall clock since its first tick (a switch sending
  audio slower than real time, or a gateway too loaded to keep up). Ticks stop counting at
  the call's `DISCONNECTED` mark: a call waiting for its last transcripts is not stalled.

* `recording_failed` - the call's recording stopped (disk full, I/O error), from the call's
  `recording_failed` trace entry: critical, raised as soon as the failed write is traced.

Each rule fires at most once per call (the rule name is the de-duplication key; the shell
seeds the keys of stored alerts so a restart does not raise them again).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from config.settings import AlertRuleSettings, AlertSettings
from monitor.alerts.baselines import Baselines
from monitor.events import (
    CallEvent,
    CallFinalised,
    CallStarted,
    FindingMade,
    FindingSource,
    Marked,
    ReadingTaken,
    SegmentTranscribed,
    TraceKind,
)
from monitor.qa.events import ForbiddenPhraseSaid, OrderViolated, PhraseMissed

_LEVELS = {"info": 0, "minor": 1, "major": 2, "critical": 3, "off": 99}
#: finding severity -> alert severity
_RESERVED = frozenset({"party", "severity", "finding", "finding_severity"})
_ALERT_SEVERITY = {"info": "info", "minor": "info", "major": "warning", "critical": "critical"}


@dataclass(frozen=True, slots=True)
class MediaTick:
    """A running call's media position (ms) at wall time `wall_s` (seconds, any epoch)."""

    call_id: str
    media_ms: int
    wall_s: float


@dataclass(frozen=True, slots=True)
class Alert:
    call_id: str
    rule: str  # de-duplication key within the call
    kind: str
    severity: str  # "info" | "warning" | "critical"
    message: str
    media_start_ms: int | None
    media_end_ms: int | None
    party: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    agent_id: str | None = None
    queue: str | None = None


@dataclass
class _Call:
    call_id: str
    queue: str | None
    agent: str | None
    rules: AlertRuleSettings
    fired: set[str]
    media_ms: int = 0
    tick_ms: int = -1  # media position at the last tick
    advanced_wall_s: float = 0.0  # wall time the position last moved
    first_tick: tuple[float, int] | None = None  # (wall_s, media_ms)
    dead_air_from: int | None = None
    poor_from: dict[str, tuple[int, list[str]]] = field(default_factory=dict)
    shed: int = 0
    connected: bool = True  # until the `DISCONNECTED` mark: the call is only finishing then


class AlertEngine:
    def __init__(
        self,
        settings: AlertSettings,
        baselines: Baselines | None = None,
        fired: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._settings = settings
        self.baselines = baselines or Baselines({})
        self._calls: dict[str, _Call] = {}
        # (call_id, rule) of alerts already raised, e.g. stored before a restart.
        self._seeded: dict[str, set[str]] = {}
        for call_id, rule in fired:
            self._seeded.setdefault(call_id, set()).add(rule)

    @property
    def calls(self) -> list[str]:
        return list(self._calls)

    # -- inputs ----------------------------------------------------------------------------

    def feed(self, record: CallEvent) -> list[Alert]:
        """One call event from the bus; the alerts it raises."""
        if isinstance(record, CallStarted):
            self._calls[record.call_id] = _Call(
                record.call_id,
                record.queue,
                record.agent_id,
                self._settings.for_queue(record.queue),
                self._seeded.pop(record.call_id, set()),
            )
            return []
        call = self._calls.get(record.call_id)
        if call is None:
            return []
        out: list[Alert | None] = []
        if isinstance(record, Marked):
            out.extend(self._on_trace(call, record))
        elif isinstance(record, ReadingTaken):
            out.append(self._on_reading(call, record))
        elif isinstance(record, FindingMade):
            out.append(self._on_finding(call, record))
        elif isinstance(record, SegmentTranscribed):
            limit = call.rules.asr_latency_s * 1000
            if limit and record.latency_ms is not None and record.latency_ms > limit:
                out.append(
                    self._fire(call, "asr_lag:latency", "asr_lag", "warning",
                               f"transcript {record.latency_ms / 1000:.1f} s late "
                               f"(limit {limit / 1000:g} s)",
                               record.start_ms, record.end_ms, party=record.party,
                               latency_ms=record.latency_ms, threshold_ms=limit)
                )  # fmt: skip
        elif isinstance(record, CallFinalised):
            out.extend(self._on_closed(call, record))
            del self._calls[call.call_id]
        return [a for a in out if a is not None]

    def tick(self, tick: MediaTick) -> list[Alert]:
        """A running call's media position now; the alerts that are due."""
        call = self._calls.get(tick.call_id)
        if call is None or not call.connected:
            return []
        out: list[Alert | None] = []
        if call.first_tick is None:
            call.first_tick = (tick.wall_s, tick.media_ms)
        if tick.media_ms > call.tick_ms:
            call.tick_ms = tick.media_ms
            call.advanced_wall_s = tick.wall_s
        call.media_ms = max(call.media_ms, tick.media_ms)
        stall_s = call.rules.media_stall_s
        stalled_s = tick.wall_s - call.advanced_wall_s
        wall0, media0 = call.first_tick
        lag_s = (tick.wall_s - wall0) - (tick.media_ms - media0) / 1000
        if stall_s and max(stalled_s, lag_s) >= stall_s:
            message = (
                f"no audio for {stalled_s:.1f} s while connected"
                if stalled_s >= stall_s
                else f"audio {lag_s:.1f} s behind the wall clock"
            )
            out.append(
                self._fire(call, "media_stalled", "media_stalled", "critical", message,
                           tick.media_ms, tick.media_ms, stalled_s=round(stalled_s, 3),
                           lag_s=round(lag_s, 3), threshold_s=stall_s)
            )  # fmt: skip
        out.extend(self._duration_long(call, call.media_ms))
        limit = call.rules.dead_air_s * 1000
        if limit and call.dead_air_from is not None and call.media_ms - call.dead_air_from >= limit:
            out.append(self._dead_air(call, call.dead_air_from, call.media_ms, ongoing=True))
        return [a for a in out if a is not None]

    # -- rules -----------------------------------------------------------------------------

    def _fire(
        self,
        call: _Call,
        rule: str,
        kind: str,
        severity: str,
        message: str,
        start_ms: int | None,
        end_ms: int | None,
        /,
        *,
        party: str | None = None,
        **evidence: Any,  # positional-only above: evidence may be named "rule", "kind" ...
    ) -> Alert | None:
        if rule in call.fired:
            return None
        call.fired.add(rule)
        return Alert(
            call.call_id, rule, kind, severity, message, start_ms, end_ms, party,
            evidence, call.agent, call.queue,
        )  # fmt: skip

    def _duration_long(self, call: _Call, media_ms: int) -> list[Alert | None]:
        out: list[Alert | None] = []
        limit = round(call.rules.max_duration_s * 1000)
        if limit and media_ms > limit:
            out.append(
                self._fire(call, "duration_long:limit", "duration_long", "warning",
                           f"call longer than {limit / 1000:g} s", limit, media_ms,
                           duration_ms=media_ms, threshold_ms=limit)
            )  # fmt: skip
        base = self.baselines.for_call(call.queue, call.agent) if call.rules.learned else None
        if base is not None:
            k = call.rules.learned_k
            bound = base.upper_ms(k)
            if media_ms > bound:
                out.append(
                    self._fire(call, "duration_long:learned", "duration_long", "warning",
                               f"call longer than usual for {base.key} "
                               f"({media_ms / 1000:.0f} s > {bound / 1000:.0f} s)",
                               bound, media_ms, duration_ms=media_ms, threshold_ms=bound,
                               **base.evidence(k))
                )  # fmt: skip
        return out

    def _on_closed(self, call: _Call, rec: CallFinalised) -> list[Alert | None]:
        out = self._duration_long(call, rec.duration_ms)
        if rec.status != "completed":
            return out  # an interrupted call's length says nothing about the conversation
        limit = round(call.rules.min_duration_s * 1000)
        if limit and rec.duration_ms < limit:
            out.append(
                self._fire(call, "duration_short:limit", "duration_short", "warning",
                           f"call shorter than {limit / 1000:g} s", 0, rec.duration_ms,
                           duration_ms=rec.duration_ms, threshold_ms=limit)
            )  # fmt: skip
        base = self.baselines.for_call(call.queue, call.agent) if call.rules.learned else None
        if base is not None:
            k = call.rules.learned_k
            bound = base.lower_ms(k)
            if rec.duration_ms < bound:
                out.append(
                    self._fire(call, "duration_short:learned", "duration_short", "warning",
                               f"call shorter than usual for {base.key} "
                               f"({rec.duration_ms / 1000:.1f} s < {bound / 1000:.1f} s)",
                               0, rec.duration_ms, duration_ms=rec.duration_ms,
                               threshold_ms=bound, **base.evidence(k))
                )  # fmt: skip
        return out

    def _dead_air(self, call: _Call, start: int, end: int, *, ongoing: bool) -> Alert | None:
        limit = round(call.rules.dead_air_s * 1000)
        return self._fire(
            call, "dead_air", "dead_air", "warning",
            f"dead air for {(end - start) / 1000:.1f} s" + (" (ongoing)" if ongoing else ""),
            start, end, duration_ms=end - start, threshold_ms=limit, ongoing=ongoing,
        )  # fmt: skip

    def _on_trace(self, call: _Call, rec: Marked) -> list[Alert | None]:
        if rec.media_ms is not None:
            call.media_ms = max(call.media_ms, rec.media_ms)
        if rec.kind is TraceKind.DEAD_AIR_STARTED and rec.media_ms is not None:
            call.dead_air_from = rec.media_ms
        elif rec.kind in (TraceKind.HOLD_STARTED, TraceKind.DISCONNECTED):
            call.dead_air_from = None  # music on hold is not dead air; a hang-up ends it
            call.connected = rec.kind is not TraceKind.DISCONNECTED
        elif rec.kind is TraceKind.RECORDING_FAILED:  # the disk refused a write: the call goes on
            data = rec.data
            reason = data.get("reason")
            why = reason if isinstance(reason, str) else "write failed"
            error = data.get("error")
            return [
                self._fire(call, "recording_failed", "recording_failed", "critical",
                           f"recording stopped: {why} "
                           "(the call continues, unrecorded from here)",
                           rec.media_ms, rec.media_ms,
                           error=error if isinstance(error, str) else None)
            ]  # fmt: skip
        elif rec.kind in (TraceKind.ASR_SHED, TraceKind.ASR_TIMEOUT):
            call.shed += 1
            why = "ASR hung" if rec.kind is TraceKind.ASR_TIMEOUT else "ASR overloaded"
            if call.rules.asr_shed and call.shed >= call.rules.asr_shed:
                return [
                    self._fire(call, "asr_lag:shed", "asr_lag", "warning",
                               f"{call.shed} utterances dropped without a transcript "
                               f"({why})", rec.media_ms, rec.media_ms,
                               shed=call.shed, threshold=call.rules.asr_shed)
                ]  # fmt: skip
        return []

    def _on_reading(self, call: _Call, event: ReadingTaken) -> Alert | None:
        r, rec = call.rules, event.reading
        reasons = []
        snr = rec.snr_db if rec.snr_db is not None and math.isfinite(rec.snr_db) else None
        if snr is not None and snr < r.poor_snr_db:
            reasons.append("snr")
        clip_ratio = rec.clip_ratio if math.isfinite(rec.clip_ratio) else None
        if (clip_ratio or 0.0) > r.poor_clip_ratio:
            reasons.append("clipping")
        span = max(rec.end_ms - rec.start_ms, 1)
        if rec.dropout_ms / span > r.poor_dropout_ratio:
            reasons.append("dropouts")
        if not reasons:
            call.poor_from.pop(rec.party, None)
            return None
        start, seen = call.poor_from.get(rec.party, (rec.start_ms, []))
        seen = sorted(set(seen) | set(reasons))
        call.poor_from[rec.party] = (start, seen)
        limit = round(r.poor_audio_s * 1000)
        if not limit or rec.end_ms - start < limit:
            return None
        return self._fire(
            call, f"poor_audio:{rec.party}", "poor_audio", "warning",
            f"poor audio from the {rec.party} for {(rec.end_ms - start) / 1000:.0f} s "
            f"({', '.join(seen)})", start, rec.end_ms, party=rec.party,
            reasons=seen, snr_db=snr, clip_ratio=clip_ratio,
            dropout_ms=rec.dropout_ms, threshold_ms=limit, snr_limit_db=r.poor_snr_db,
            clip_limit=r.poor_clip_ratio, dropout_limit=r.poor_dropout_ratio,
        )  # fmt: skip

    def _on_finding(self, call: _Call, rec: FindingMade) -> Alert | None:
        r, d = call.rules, rec.detail
        level = _LEVELS.get(rec.severity or "info", 0)
        if rec.kind == "dead_air":
            call.dead_air_from = None
            limit = r.dead_air_s * 1000
            if limit and rec.start_ms is not None and rec.end_ms is not None:
                if rec.end_ms - rec.start_ms >= limit:
                    return self._dead_air(call, rec.start_ms, rec.end_ms, ongoing=False)
            return None
        severity = _ALERT_SEVERITY.get(rec.severity or "info", "warning")
        if rec.source is FindingSource.QUALITY:
            if level < _LEVELS[r.quality_min_severity]:
                return None
            party = rec.party or ""
            return self._fire(
                call, f"quality:{rec.kind}:{party}", "poor_audio", severity,
                f"audio quality: {rec.kind.replace('_', ' ')}" + (f" ({party})" if party else ""),
                rec.start_ms, rec.end_ms, party=rec.party, finding=rec.kind, **_brief(d),
            )  # fmt: skip
        if rec.source is not FindingSource.COMPLIANCE:
            return None
        if level < _LEVELS[r.compliance_min_severity]:
            return None
        if isinstance(d, PhraseMissed):
            kind, subject = "compliance_miss", d.stage
            message = f"required phrase missed: {d.stage} ({d.window})"
        elif isinstance(d, OrderViolated):
            kind, subject = "compliance_order", d.stage
            message = f"{d.stage} said before {d.expected_after}"
        elif isinstance(d, ForbiddenPhraseSaid):
            kind, subject = "forbidden_phrase", d.rule
            message = f"forbidden phrase: {d.phrase}"
        else:
            return None
        return self._fire(
            call, f"{kind}:{subject}", kind, severity, message, rec.start_ms, rec.end_ms,
            party=rec.party,
            finding=rec.kind, finding_severity=rec.severity, **_brief(d),
        )  # fmt: skip


def _brief(detail: object) -> dict[str, Any]:
    """The scalar fields of a finding's detail (evidence stays small; no NaN or infinity)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(detail):  # type: ignore[arg-type]
        v = getattr(detail, f.name)
        if isinstance(v, enum.Enum):
            v = v.value
        if isinstance(v, float) and not math.isfinite(v):
            continue
        if isinstance(v, str | int | float | bool) and f.name not in _RESERVED:
            out[f.name] = v
    return out
