"""What the compliance checker emits live, and the per-call result at the end.

Frozen, slotted dataclasses with flat fields (strings, ints, floats), so the storage layer can
write them as rows and the API can serialise them without knowing this package. Times are
media time in milliseconds from the start of the call. `score` fields are fuzzy-match scores,
0..100; `deduction` fields are points off the call's compliance score, also out of 100.

Live events:

* `PhraseMatched` - a stage was heard (all its elements, in one turn of the party).
* `PhraseMissed` - a stage's window closed without it (at once for "first N s" windows, at
  call end for "anywhere" and "last N s").
* `ForbiddenPhraseSaid` - an alert, at once.
* `OrderViolated` - a stage was heard before a stage that must precede it (emitted when the
  earlier-required stage is finally heard: only then is the order known to be wrong).
* `RuleSuspended` - an exception phrase suspended a stage or a forbidden rule.

End of call: `ComplianceResult` with one `StageChecked` per stage and the `Deduction`s.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PhraseMatched:
    stage: str
    phrase: str  # the script's variant(s) that matched, one per element, joined with " + "
    matched_text: str  # the transcript as spoken, from the first element to the last
    score: float  # the weakest element's score
    start_ms: int
    end_ms: int
    party: str
    by_pinyin: bool = False  # some element only matched as a homophone


@dataclass(frozen=True, slots=True)
class PhraseMissed:
    stage: str
    window: str  # e.g. "first 10 s of agent speech"
    severity: str
    deduction: float  # 0 for stages that are not required
    at_ms: int  # when the window closed
    heard_outside_window: bool = False  # said, but too late or too early
    required: bool = True  # False: an optional stage not said (shown grey, no deduction)


@dataclass(frozen=True, slots=True)
class ForbiddenPhraseSaid:
    rule: str
    phrase: str
    matched_text: str
    score: float
    start_ms: int
    end_ms: int
    party: str
    severity: str


@dataclass(frozen=True, slots=True)
class OrderViolated:
    stage: str  # heard too early ...
    expected_after: str  # ... before this stage
    stage_ms: int  # when `stage` was heard
    expected_after_ms: int  # when `expected_after` was heard
    severity: str
    deduction: float

    @property
    def at_ms(self) -> int:
        return self.expected_after_ms


@dataclass(frozen=True, slots=True)
class RuleSuspended:
    rule: str  # the suspended stage or forbidden rule
    exception: str  # the exception rule that suspended it
    phrase: str
    matched_text: str
    score: float
    start_ms: int
    end_ms: int
    party: str
    until_ms: int | None  # None = for the rest of the call


ComplianceEvent = PhraseMatched | PhraseMissed | ForbiddenPhraseSaid | OrderViolated | RuleSuspended


class StageStatus(enum.StrEnum):
    PASSED = "passed"
    MISSED = "missed"  # never heard (in its window)
    OUTSIDE_WINDOW = "outside_window"  # heard, but not in its window
    SUSPENDED = "suspended"  # an exception phrase lifted it


@dataclass(frozen=True, slots=True)
class StageChecked:
    """One row of the end-of-call checklist."""

    stage: str
    title: str
    status: str  # a StageStatus value
    required: bool
    severity: str
    deduction: float  # points taken for this stage (0 when passed, suspended or optional)
    window: str
    phrase: str = ""  # the hit (when heard; also for OUTSIDE_WINDOW, so QA can jump to it)
    matched_text: str = ""
    score: float = 0.0
    start_ms: int | None = None
    end_ms: int | None = None
    party: str = ""
    order_ok: bool = True

    @property
    def heard(self) -> bool:
        return self.start_ms is not None


@dataclass(frozen=True, slots=True)
class Deduction:
    rule: str  # stage or forbidden-rule id
    kind: str  # "missed", "outside_window", "forbidden", "order"
    severity: str
    points: float
    at_ms: int


@dataclass(frozen=True, slots=True)
class ComplianceResult:
    script: str
    score: float  # 0..100: 100 minus the deductions, floored at 0
    passed: bool  # score >= the script's pass score and nothing critical went wrong
    critical: bool  # a critical stage was missed or a critical forbidden phrase said
    stages: tuple[StageChecked, ...]
    forbidden: tuple[ForbiddenPhraseSaid, ...]
    order_violations: tuple[OrderViolated, ...]
    suspensions: tuple[RuleSuspended, ...]
    deductions: tuple[Deduction, ...]
    duration_ms: int

    def stage(self, stage_id: str) -> StageChecked:
        for row in self.stages:
            if row.stage == stage_id:
                return row
        raise KeyError(stage_id)
