"""The live compliance checker for one call (sans-I/O): transcript segments in, events out.

`ComplianceChecker(script)` is fed each transcript segment as it arrives (`on_segment`) and
told how far media time has got (`advance`); both return the events that became true, at
once: a stage heard (`PhraseMatched`), a "first N s" window closed without its stage
(`PhraseMissed`), a forbidden phrase (`ForbiddenPhraseSaid`), a stage heard before one that
must precede it (`OrderViolated`), an exception phrase suspending a rule (`RuleSuspended`).
`close(duration_ms)` emits the misses that only the end of the call can tell ("anywhere",
"last N s"); `finish(duration_ms)` closes if needed and returns the `ComplianceResult`.

The `advance` contract: call it with a media time up to which every segment of both parties
has already been passed to `on_segment` (the transcript watermark; `TranscriptWatermark`
computes it from the segmenters' state and the utterances waiting for ASR). A miss is
emitted by the first `advance` at or past the window's close, with `at_ms` = the close, so
misses are never later than the caller's watermark and never premature. Speech heard after
a "first N s" window closed is recorded as heard outside the window (for QA to jump to) but
does not pass it.

Windows: a "first N s" stage passes when its hit *starts* by anchor + N s (the anchor being
the call start or the party's first transcribed words); a "last N s" stage passes when its
latest hit *ends* at or after duration - N s. Misses of stages that are not `required` carry
no deduction. A forbidden rule deducts once per call however often it is broken; suspended
rules neither alert nor deduct while suspended.

Lifecycle: OPEN -> CLOSED (`close`) -> FINISHED (`finish`); feeding a closed checker raises
`CheckerFinished`.
"""

from __future__ import annotations

import enum

from monitor.qa.errors import CheckerFinished
from monitor.qa.events import (
    ComplianceEvent,
    ComplianceResult,
    ForbiddenPhraseSaid,
    OrderViolated,
    PhraseMatched,
    PhraseMissed,
    RuleSuspended,
    StageStatus,
)
from monitor.qa.hits import Hit, best_hit, intent_hit, stage_hit
from monitor.qa.intents import IntentTracker
from monitor.qa.rules import Anchor, ComplianceScript, Stage, WindowKind
from monitor.qa.scoring import StageState, build_result
from monitor.qa.textmatch import normalize
from monitor.qa.transcript import PartyTranscripts, Segment, Turn

PARTIES = ("agent", "customer")


class CheckerState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    FINISHED = "finished"


class ComplianceChecker:
    def __init__(
        self, script: ComplianceScript, agent_name: str | None = None, semantic: bool = True
    ) -> None:
        """`agent_name`: the agent's name from the call metadata, for the elements that
        accept it (`own_name = true` in the script). `semantic=False` checks the phrases
        only (the lexical layer alone, for comparison), ignoring the script's intents."""
        self.script = script
        self._intents = (
            IntentTracker(script.intents) if semantic and script.intents is not None else None
        )
        self.state = CheckerState.OPEN
        self._transcripts = PartyTranscripts(script.turn_break_ms, script.turn_gap_ms)
        self._stages = {s.id: StageState(s.for_agent(agent_name)) for s in script.stages}
        self._first_speech: dict[str, int] = {}
        self._watermark = 0
        self._last_end = 0
        self._forbidden: list[ForbiddenPhraseSaid] = []
        self._forbidden_last_end: dict[tuple[str, str], int] = {}
        self._orders: list[OrderViolated] = []
        self._suspensions: list[RuleSuspended] = []
        self._suspended_until: dict[str, int | None] = {}  # rule id -> until (None = forever)
        self._duration_ms = 0

    # -- input ---------------------------------------------------------------------------
    def on_segment(
        self, party: str, start_ms: int, end_ms: int, text: str, language: str = ""
    ) -> list[ComplianceEvent]:
        """One transcript segment of `party` ("agent" / "customer"); returns new events.

        `language` is informational: normalisation works on the characters themselves.
        """
        if self.state is not CheckerState.OPEN:
            raise CheckerFinished(f"on_segment() on a checker in state {self.state.value}")
        if party not in PARTIES:
            raise ValueError(f"party must be one of {PARTIES}, got {party!r}")
        if not 0 <= start_ms <= end_ms:
            raise ValueError(f"need 0 <= start_ms <= end_ms, got {start_ms}, {end_ms}")
        self._last_end = max(self._last_end, end_ms)
        norm = normalize(text)
        if not norm.text:
            return []
        self._first_speech.setdefault(party, start_ms)
        turn, lo = self._transcripts.add(Segment(party, start_ms, end_ms, norm))
        meant: dict[str, Hit] = {}
        if self._intents is not None:
            for found in self._intents.add(party, turn.number, start_ms, end_ms, text):
                meant[found.rule] = intent_hit(found, turn)
        events: list[ComplianceEvent] = []
        self._check_exceptions(turn, lo, events)
        self._check_forbidden(turn, lo, events, meant)
        self._check_stages(turn, lo, events, meant)
        return events

    def advance(self, media_ms: int) -> list[ComplianceEvent]:
        """Media time reached `media_ms` with every earlier segment delivered; emits misses of
        "first N s" windows that have closed."""
        if self.state is not CheckerState.OPEN:
            raise CheckerFinished(f"advance() on a checker in state {self.state.value}")
        self._watermark = max(self._watermark, media_ms)
        events: list[ComplianceEvent] = []
        for st in self._stages.values():
            close = self._close_ms(st.stage)
            if st.status is None and close is not None and self._watermark >= close:
                self._judge_missed(st, close, events)
        return events

    def close(self, duration_ms: int) -> list[ComplianceEvent]:
        """The call ended at `duration_ms`: emit the misses that only the end can tell."""
        if self.state is not CheckerState.OPEN:
            raise CheckerFinished(f"close() on a checker in state {self.state.value}")
        events = self.advance(max(duration_ms, self._last_end))
        self.state = CheckerState.CLOSED
        self._duration_ms = max(duration_ms, self._last_end)
        end = self._duration_ms
        for st in self._stages.values():
            if st.status is not None:
                continue
            window = st.stage.window
            if window.kind is WindowKind.LAST and st.hit is not None:
                self._check_order_at_close(st, st.hit, events)
                if st.hit.end_ms >= end - window.ms:
                    st.status = StageStatus.PASSED
                    continue
                st.outside, st.hit = st.hit, None
            elif window.kind is WindowKind.FIRST and self._close_ms(st.stage) is None:
                pass  # the anchor party never spoke: the window never opened
            elif st.hit is not None:
                st.status = StageStatus.PASSED
                continue
            self._judge_missed(st, end, events)
        return events

    def finish(self, duration_ms: int) -> ComplianceResult:
        """Close (if not yet) and return the per-call checklist and score."""
        if self.state is CheckerState.OPEN:
            self.close(duration_ms)
        self.state = CheckerState.FINISHED
        return build_result(
            self.script,
            list(self._stages.values()),
            self._forbidden,
            self._orders,
            self._suspensions,
            self._duration_ms,
        )

    # -- rules ---------------------------------------------------------------------------
    def _suspended(self, rule: str, at_ms: int) -> bool:
        if rule not in self._suspended_until:
            return False
        until = self._suspended_until[rule]
        return until is None or at_ms <= until

    def _check_exceptions(self, turn: Turn, lo: int, events: list[ComplianceEvent]) -> None:
        for rule in self.script.exceptions:
            if not rule.party.hears(turn.party):
                continue
            hit = best_hit(rule.phrases, turn, lo)
            if hit is None:
                continue
            until = None if rule.for_s <= 0 else hit.end_ms + int(rule.for_s * 1000)
            for target in rule.suspends:
                st = self._stages.get(target)
                if st is not None and st.status is not None:
                    continue  # already judged: nothing left to suspend
                previous = self._suspended_until.get(target, 0)
                if previous is None or (until is not None and previous >= until):
                    continue
                self._suspended_until[target] = until
                event = RuleSuspended(
                    target,
                    rule.id,
                    *hit.evidence,
                    until,
                )
                self._suspensions.append(event)
                events.append(event)

    def _check_forbidden(
        self, turn: Turn, lo: int, events: list[ComplianceEvent], meant: dict[str, Hit]
    ) -> None:
        for rule in self.script.forbidden:
            if not rule.party.hears(turn.party):
                continue
            hit = best_hit(rule.phrases, turn, lo) or meant.get(rule.id)
            if hit is None or self._suspended(rule.id, hit.start_ms):
                continue
            key = (rule.id, turn.party)
            if hit.start_ms < self._forbidden_last_end.get(key, -1):
                continue  # the same utterance of the phrase, seen again with more context
            self._forbidden_last_end[key] = hit.end_ms
            event = ForbiddenPhraseSaid(
                rule.id,
                *hit.evidence,
                rule.severity.value,
            )
            self._forbidden.append(event)
            events.append(event)

    def _check_stages(
        self, turn: Turn, lo: int, events: list[ComplianceEvent], meant: dict[str, Hit]
    ) -> None:
        # Stages already missed look last, so they see what the others claimed (`_claimed`).
        for st in sorted(self._stages.values(), key=lambda s: s.status is StageStatus.MISSED):
            stage = st.stage
            if not stage.party.hears(turn.party) or not self._wants_hit(st, turn):
                continue
            hit = self._stage_hit(st, turn, lo, meant)
            if hit is None and stage.id in meant:
                # Said in the agent's own words: the intent matched where no phrase did.
                hit = meant[stage.id]
                if st.status is StageStatus.MISSED and self._claimed(st, hit):
                    continue
            if hit is None:
                continue
            if st.status is StageStatus.MISSED:
                st.outside = hit  # heard after its window closed: kept for QA, no event
                self._check_order(st, hit, events)
                continue
            close = self._close_ms(stage)
            if close is not None and hit.start_ms > close:
                st.outside = hit
                self._judge_missed(st, close, events)
                self._check_order(st, hit, events)
                continue
            first = st.hit is None
            st.hit = hit
            if stage.window.kind is not WindowKind.LAST:
                st.status = StageStatus.PASSED  # "last" stages are judged at close()
            events.append(
                PhraseMatched(
                    stage.id,
                    *hit.evidence,
                    hit.by_pinyin,
                )
            )
            if first:
                self._check_order(st, hit, events)

    @staticmethod
    def _wants_hit(st: StageState, turn: Turn) -> bool:
        """Open stages look for a hit; a "last N s" stage keeps looking for a later one (one
        per turn); a missed stage looks once more, to record where it was said too late."""
        if st.status is StageStatus.MISSED:
            return st.outside is None
        if st.status is not None:
            return False
        return st.hit is None or st.hit.turn != (turn.party, turn.number)

    def _stage_hit(self, st: StageState, turn: Turn, lo: int, meant: dict[str, Hit]) -> Hit | None:
        """All the stage's elements in this turn, at least one of them new in this segment
        (`monitor.qa.hits.stage_hit`)."""
        return stage_hit(st, turn, lo, meant, lambda hit: self._claimed(st, hit))

    def _claimed(self, st: StageState, hit: Hit) -> bool:
        """Whether another stage's hit in the same turn overlaps `hit` in media time."""
        for other in self._stages.values():
            seen = other.hit or other.outside
            if other is st or seen is None or seen.turn != hit.turn:
                continue
            if seen.start_ms < hit.end_ms and hit.start_ms < seen.end_ms:
                return True
        return False

    def _check_order(self, st: StageState, hit: Hit, events: list[ComplianceEvent]) -> None:
        """`st` was just heard for the first time (in its window or not): any stage that must
        follow it but was heard earlier is out of order."""
        for other in self._stages.values():
            if st.stage.id not in other.stage.after:
                continue
            if other.stage.window.kind is WindowKind.LAST and other.status is None:
                continue  # judged at close(), on its final hit
            before = other.hit or other.outside
            if before is None or before.start_ms >= hit.start_ms:
                continue
            if self._suspended(other.stage.id, before.start_ms):
                continue
            other.order_ok = False
            event = OrderViolated(
                other.stage.id,
                st.stage.id,
                before.start_ms,
                hit.start_ms,
                other.stage.order_severity.value,
                other.stage.order_deduction,
            )
            self._orders.append(event)
            events.append(event)

    def _check_order_at_close(
        self, st: StageState, hit: Hit, events: list[ComplianceEvent]
    ) -> None:
        """A "last N s" stage's order is judged on its final hit: each stage it must follow
        has to have been heard before that."""
        if self._suspended(st.stage.id, hit.start_ms):
            return
        for before_id in st.stage.after:
            before = self._stages[before_id]
            first = before.hit or before.outside
            if first is None or first.start_ms < hit.start_ms:
                continue
            st.order_ok = False
            event = OrderViolated(
                st.stage.id,
                before_id,
                hit.start_ms,
                first.start_ms,
                st.stage.order_severity.value,
                st.stage.order_deduction,
            )
            self._orders.append(event)
            events.append(event)

    # -- windows -------------------------------------------------------------------------
    def _close_ms(self, stage: Stage) -> int | None:
        """When a "first N s" window closes; None for other windows or an unknown anchor."""
        window = stage.window
        if window.kind is not WindowKind.FIRST:
            return None
        if window.anchor is Anchor.CALL_START:
            return window.ms
        party = "agent" if window.anchor is Anchor.AGENT_SPEECH else "customer"
        start = self._first_speech.get(party)
        return None if start is None else start + window.ms

    def _judge_missed(self, st: StageState, at_ms: int, events: list[ComplianceEvent]) -> None:
        stage = st.stage
        if self._suspended(stage.id, at_ms):
            st.status = StageStatus.SUSPENDED
            return
        st.status = StageStatus.MISSED
        st.missed_at_ms = at_ms
        deduction = stage.deduction if stage.required else 0.0
        events.append(
            PhraseMissed(
                stage.id,
                stage.window.describe(),
                stage.severity.value,
                deduction,
                at_ms,
                heard_outside_window=st.outside is not None,
                required=stage.required,
            )
        )
