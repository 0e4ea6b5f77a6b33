"""`ConversationTracker`: how the two parties' speech fits together (sans-I/O, streaming).

Owns the cross-party measures: talk time and ratio, non-talk time, dead air, overtalk (who
interrupted whom), the agent's response gaps and first response, and speaking rate.
What it emits (`DeadAirStarted`, `DeadAirDetected`, `OvertalkDetected`, `ConversationSummary`)
is in `audio_quality/records.py` with the per-party records.

Input: each party's `ActivitySpan`s from its `PartyQualityTracker` (final VAD decisions; each
party's spans tile its media time), hold and IVR-prompt hints from the call trace, and
transcript segments. The tracker walks the joint timeline up to the time both parties have
decided, one elementary interval (between consecutive span or hint boundaries) at a time.

Definitions (parameters in `ConversationSettings`, and repeated in the summary):
- *talk time*: a party's VAD speech; *non-talk*: both silent; hold and IVR prompts are left
  out of talk, non-talk, dead air and overtalk, and counted on their own.
- *dead air*: both silent for ≥ `dead_air_min_ms`, bounded by speech (or a hold/IVR edge) on
  both sides: the silence before anyone speaks and after the last word is not dead air.
  `DeadAirStarted` is emitted when a stretch reaches the threshold (live alert),
  `DeadAirDetected` when it ends.
- *overtalk*: both speaking for ≥ `overtalk_min_ms`; the *interrupter* is the party whose
  speech began later (a tie goes to the agent, who should yield). Emitted when it ends.
- *response gap*: from the end of the customer's speech to the agent's next speech onset,
  when the customer did not resume first, no hold intervened and the gap is at most
  `response_max_gap_ms`. *First response*: media time of the agent's first speech.
- *speaking rate*: transcript units over the party's VAD speech time inside the transcript
  segments, pooled per party: English words per minute, Mandarin Han characters per minute.

Hints are applied from the time they arrive on: a hold that starts before the point already
walked is clipped to it, so the runtime should pass hints as soon as the trace has them.
Memory is bounded: the pending spans of the party that is ahead, open hints, recent speech
spans for `activity_history_ms`, and transcripts waiting for their spans.
"""

from __future__ import annotations

import math
import re
from collections import deque

from audio_quality.errors import TrackerFinishedError
from audio_quality.records import (
    ActivitySpan,
    ConversationEvent,
    ConversationSummary,
    DeadAirDetected,
    DeadAirStarted,
    OvertalkDetected,
)
from audio_quality.settings import QualitySettings

_WORD = re.compile(r"[0-9A-Za-z\u00C0-\u024F]+(?:'[A-Za-z]+)?")
_HAN = re.compile(r"[\u3400-\u4DBF\u4E00-\u9FFF\uF900-\uFAFF]")


def count_units(text: str, language: str | None) -> tuple[int, str]:
    """Speaking-rate units in `text`: ("chars", Han characters) for Mandarin, else
    ("words", word tokens). `language` None or "auto" picks by content."""
    han = len(_HAN.findall(text))
    lang = (language or "auto").lower()
    if lang.startswith("zh") or (lang == "auto" and han > 0):
        return han, "chars"
    return len(_WORD.findall(text)), "words"


def talk_share(own_ms: int, talk_ms: int) -> float | None:
    """One party's share of the talk (0..1), None before anyone spoke: the stored
    `agent_talk_ratio` and the board's live talk meters are both this."""
    return own_ms / talk_ms if talk_ms else None


class ConversationTracker:
    def __init__(
        self, settings: QualitySettings, agent: str = "agent", customer: str = "customer"
    ) -> None:
        if agent == customer:
            raise ValueError(f"agent and customer must differ, got {agent!r} twice")
        cs = settings.conversation
        self._s = cs
        self._agent, self._customer = agent, customer
        self._spans: dict[str, deque[ActivitySpan]] = {agent: deque(), customer: deque()}
        self._mark = {agent: 0, customer: 0}  # each party decided up to here
        self._history: dict[str, deque[tuple[int, int]]] = {agent: deque(), customer: deque()}
        self._t = 0
        self._finished = False
        self._holds: list[list[float]] = []  # [start, end]; end = inf while open
        self._ivr: list[list[float]] = []  # [start, end]; end = inf while open
        self._speaking = {agent: False, customer: False}
        self._speech_start = {agent: 0, customer: 0}
        self._kind: str | None = None  # run in progress: silence / both / single / held
        self._run_start = 0
        self._left_bounded = False
        self._announced = False
        self._last_customer_end: int | None = None
        self._totals = dict.fromkeys(
            ("hold", "ivr", "agent", "customer", "non_talk", "da_n", "da_total", "da_max",
             "ot_n", "ot_total", "ot_max", "int_agent", "int_customer"), 0,
        )  # fmt: skip
        self._longest: tuple[int, int] | None = None
        self._gap_n = self._gap_sum = self._gap_max = 0
        self._first_response: int | None = None
        self._pending_text: deque[tuple[str, int, int, int, str]] = deque()
        self._rate: dict[tuple[str, str], list[float]] = {}

    # ---- hints and input -------------------------------------------------------------
    def hold_started(self, media_ms: int) -> None:
        self._holds.append([float(max(media_ms, self._t)), math.inf])

    def hold_ended(self, media_ms: int) -> None:
        for h in reversed(self._holds):
            if math.isinf(h[1]):
                h[1] = float(max(media_ms, h[0]))
                return

    def ivr_prompt(self, start_ms: int, end_ms: int) -> None:
        """An IVR prompt played into the call over [start_ms, end_ms)."""
        if end_ms < start_ms:
            raise ValueError(f"end_ms ({end_ms}) must not precede start_ms ({start_ms})")
        self._ivr.append([float(max(start_ms, self._t)), float(end_ms)])

    def ivr_prompt_started(self, media_ms: int) -> None:
        """An IVR prompt starts playing now; it lasts until `ivr_prompt_ended`."""
        self._ivr.append([float(max(media_ms, self._t)), math.inf])

    def ivr_prompt_ended(self, media_ms: int) -> None:
        for v in reversed(self._ivr):
            if math.isinf(v[1]):
                v[1] = float(max(media_ms, v[0]))
                return

    def add_transcript(
        self, party: str, start_ms: int, end_ms: int, text: str, language: str | None
    ) -> None:
        """A transcript segment; it is rated once that party's activity covers end_ms."""
        if party not in self._spans:
            raise ValueError(f"party must be {self._agent!r} or {self._customer!r}, got {party!r}")
        units, kind = count_units(text, language)
        if units:
            self._pending_text.append((party, start_ms, end_ms, units, kind))
            self._rate_ready()

    def add_activity(self, spans: list[ActivitySpan]) -> list[ConversationEvent]:
        """Feed spans (of either party, each party's in order); returns events now known."""
        if self._finished:
            raise TrackerFinishedError("add_activity() after finish()")
        for sp in spans:
            if sp.party not in self._spans:
                raise ValueError(f"unknown party {sp.party!r}")
            self._spans[sp.party].append(sp)
            self._mark[sp.party] = sp.end_ms
            if sp.speech:
                hist = self._history[sp.party]
                if hist and hist[-1][1] == sp.start_ms:
                    hist[-1] = (hist[-1][0], sp.end_ms)
                else:
                    hist.append((sp.start_ms, sp.end_ms))
                while hist and hist[0][1] < sp.end_ms - self._s.activity_history_ms:
                    hist.popleft()
        out: list[ConversationEvent] = []
        self._walk(min(self._mark.values()), out)
        self._rate_ready()
        return out

    def flush(self) -> list[ConversationEvent]:
        """End of the call: walk what both parties decided and close runs in progress (a
        silence running into the call end is not dead air)."""
        out: list[ConversationEvent] = []
        if not self._finished:
            self._walk(min(self._mark.values()), out)
            self._close_run(self._t, out, call_end=True)
            self._kind = None
        return out

    def talk_ms(self, party: str) -> int | None:
        """The party's talk so far, as `finish()` will count it (the live talk share and the
        stored one come from these same totals); None for a party it does not track."""
        return self._totals.get(party) if party in ("agent", "customer") else None

    def finish(self) -> ConversationSummary:
        if self._finished:
            raise TrackerFinishedError("finish() called twice")
        self.flush()
        self._finished = True
        self._pending_text.clear()
        t = self._totals
        dur = self._t
        conv = dur - t["hold"] - t["ivr"]
        talk = t["agent"] + t["customer"]
        return ConversationSummary(
            duration_ms=dur,
            hold_ms=t["hold"],
            ivr_ms=t["ivr"],
            agent_talk_ms=t["agent"],
            customer_talk_ms=t["customer"],
            agent_talk_ratio=talk_share(t["agent"], talk),
            agent_talk_share=t["agent"] / conv if conv > 0 else None,
            customer_talk_share=t["customer"] / conv if conv > 0 else None,
            non_talk_ms=t["non_talk"],
            non_talk_ratio=t["non_talk"] / conv if conv > 0 else None,
            dead_air_min_ms=self._s.dead_air_min_ms,
            dead_air_count=t["da_n"],
            dead_air_total_ms=t["da_total"],
            dead_air_max_ms=t["da_max"],
            dead_air_longest_start_ms=self._longest[0] if self._longest else None,
            dead_air_longest_end_ms=self._longest[1] if self._longest else None,
            overtalk_min_ms=self._s.overtalk_min_ms,
            overtalk_count=t["ot_n"],
            overtalk_total_ms=t["ot_total"],
            overtalk_max_ms=t["ot_max"],
            agent_interruptions=t["int_agent"],
            customer_interruptions=t["int_customer"],
            response_gap_count=self._gap_n,
            response_gap_mean_ms=self._gap_sum / self._gap_n if self._gap_n else None,
            response_gap_max_ms=self._gap_max if self._gap_n else None,
            first_response_ms=self._first_response,
            agent_words_per_min=self._rate_of(self._agent, "words"),
            agent_chars_per_min=self._rate_of(self._agent, "chars"),
            customer_words_per_min=self._rate_of(self._customer, "words"),
            customer_chars_per_min=self._rate_of(self._customer, "chars"),
        )

    # ---- the joint timeline ----------------------------------------------------------
    def _held(self, t: int) -> tuple[bool, bool, int]:
        """(on hold, in an IVR prompt, next hint boundary after t) at media time t."""
        nxt = math.inf
        hold = ivr = False
        for s, e in self._holds:
            if s <= t < e:
                hold = True
            for b in (s, e):
                if b > t:
                    nxt = min(nxt, b)
        for s2, e2 in self._ivr:
            if s2 <= t < e2:
                ivr = True
            for b in (s2, e2):
                if b > t:
                    nxt = min(nxt, b)
        return hold, ivr, int(nxt) if not math.isinf(nxt) else 2**62

    def _walk(self, until: int, out: list[ConversationEvent]) -> None:
        a, c = self._agent, self._customer
        while self._t < until:
            t = self._t
            for p in (a, c):
                q = self._spans[p]
                while q and q[0].end_ms <= t:
                    q.popleft()
            sa, sc = self._spans[a][0], self._spans[c][0]
            hold, ivr, hint_next = self._held(t)
            t1 = min(sa.end_ms, sc.end_ms, hint_next, until)
            self._step(t, t1, sa.speech, sc.speech, hold, ivr, out)
            self._t = t1
        self._holds = [h for h in self._holds if h[1] > self._t]
        self._ivr = [v for v in self._ivr if v[1] > self._t]

    def _step(
        self, t0: int, t1: int, a_on: bool, c_on: bool, hold: bool, ivr: bool,
        out: list[ConversationEvent],
    ) -> None:  # fmt: skip
        a, c = self._agent, self._customer
        dur = t1 - t0
        if hold or ivr:
            kind = "held"
            self._totals["hold" if hold else "ivr"] += dur
            a_on = c_on = False  # music and prompts are not talk
            self._last_customer_end = None
        else:
            kind = "both" if a_on and c_on else "silence" if not (a_on or c_on) else "single"
            self._totals["agent"] += dur if a_on else 0
            self._totals["customer"] += dur if c_on else 0
            self._totals["non_talk"] += dur if kind == "silence" else 0
        # Onsets and offsets of each party (for interrupter and response gaps).
        if a_on and not self._speaking[a]:
            self._speech_start[a] = t0
            if self._first_response is None:
                self._first_response = t0
            if self._last_customer_end is not None and not c_on:
                gap = t0 - self._last_customer_end
                if gap <= self._s.response_max_gap_ms:
                    self._gap_n += 1
                    self._gap_sum += gap
                    self._gap_max = max(self._gap_max, gap)
            self._last_customer_end = None
        if c_on and not self._speaking[c]:
            self._speech_start[c] = t0
            self._last_customer_end = None
        if self._speaking[c] and not c_on and not hold and not ivr and not a_on:
            self._last_customer_end = t0
        self._speaking[a], self._speaking[c] = a_on, c_on
        if kind != self._kind:
            self._close_run(t0, out, call_end=False)
            # Runs alternate, so a silence run has speech or a hint before it unless it is
            # the first run of the call.
            self._left_bounded = self._kind is not None
            self._kind, self._run_start, self._announced = kind, t0, False
        if (
            kind == "silence"
            and self._left_bounded
            and not self._announced
            and t1 - self._run_start >= self._s.dead_air_min_ms
        ):
            self._announced = True
            out.append(DeadAirStarted(self._run_start, self._run_start + self._s.dead_air_min_ms))

    def _close_run(self, t: int, out: list[ConversationEvent], *, call_end: bool) -> None:
        kind, start = self._kind, self._run_start
        dur = t - start
        tot = self._totals
        if kind == "silence" and self._left_bounded and not call_end:
            if dur >= self._s.dead_air_min_ms:
                tot["da_n"] += 1
                tot["da_total"] += dur
                if dur > tot["da_max"]:
                    tot["da_max"], self._longest = dur, (start, t)
                out.append(DeadAirDetected(start, t))
        elif kind == "both" and dur >= self._s.overtalk_min_ms:
            a, c = self._agent, self._customer
            late_agent = self._speech_start[a] >= self._speech_start[c]
            who, other = (a, c) if late_agent else (c, a)
            tot["ot_n"] += 1
            tot["ot_total"] += dur
            tot["ot_max"] = max(tot["ot_max"], dur)
            tot["int_agent" if late_agent else "int_customer"] += 1
            out.append(OvertalkDetected(start, t, who, other))

    # ---- speaking rate ----------------------------------------------------------------
    def _rate_ready(self) -> None:
        while self._pending_text:
            party, start, end, units, kind = self._pending_text[0]
            if self._mark[party] < end and not self._finished:
                return
            self._pending_text.popleft()
            speech = sum(max(0, min(e, end) - max(s, start)) for s, e in self._history[party])
            if speech <= 0:
                speech = end - start  # VAD missed it: fall back on the segment's span
            acc = self._rate.setdefault((party, kind), [0.0, 0.0])
            acc[0] += units
            acc[1] += speech

    def _rate_of(self, party: str, kind: str) -> float | None:
        acc = self._rate.get((party, kind))
        if not acc or acc[1] <= 0 or acc[0] < self._s.min_rate_words:
            return None
        return acc[0] * 60_000.0 / acc[1]
