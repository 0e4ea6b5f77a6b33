"""What counts as a stage's hit in a turn: phrase hits, intent hits, and elements combined.

This module owns `Hit` (the evidence every compliance event about a match records) and the
three ways one is made:

* `best_hit(phrases, turn, lo, relax)`: the phrase of a set found with the best margin over
  its threshold in a turn (`monitor.qa.textmatch` aligns each one);
* `intent_hit(found, turn)`: an intent's match (`monitor.qa.intents`) as a `Hit`, its phrase
  the nearest example ("≈ ...");
* `stage_hit(...)`: a several-element stage (greeting: welcome, name, offer of help) heard
  when every element is in the turn, each by a phrase or by its own intent, at least one
  new in this segment; one element may fall short by `ELEMENT_RELAX` when the others are
  clearly there.

`monitor.qa.checker` decides what a hit means (windows, order, misses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monitor.qa.events import StageStatus
from monitor.qa.intents import IntentHit
from monitor.qa.rules import MISSING_OPTIONAL_PENALTY, WindowKind
from monitor.qa.scoring import StageState
from monitor.qa.textmatch import Alignment, CompiledPhrase
from monitor.qa.transcript import Turn

#: How far one element of a several-element stage may fall short of its threshold (see
#: `_stage_hit`). 20 (was 12): "me halp yor" after a clear welcome and name is an offer of
#: help; English greeting recall at 20 % CER 0.93 -> 0.95 over 1,000 calls, precision 1.00.
ELEMENT_RELAX = 20.0


@dataclass(frozen=True, slots=True)
class Hit:
    phrase: str
    matched_text: str
    score: float
    start_ms: int
    end_ms: int
    party: str
    by_pinyin: bool
    turn: tuple[str, int]  # (party, turn number)
    end_char: int  # where the hit ends in the turn's text
    margin: float = 0.0  # score minus threshold

    @property
    def evidence(self) -> tuple[str, str, float, int, int, str]:
        """What every event about a hit records, in the events' field order: the phrase, the
        text it matched, the score, the media-time span and the party."""
        return (self.phrase, self.matched_text, self.score, self.start_ms, self.end_ms, self.party)


def best_hit(
    phrases: tuple[CompiledPhrase, ...], turn: Turn, lo: int, relax: float = 0.0
) -> Hit | None:
    """The phrase of a set found with the best margin over its threshold in a turn, ending
    after character `lo`; `relax` lets hits fall that far short (see `_stage_hit`)."""
    text = turn.text
    if text is None:
        return None
    best: tuple[CompiledPhrase, Alignment] | None = None
    for phrase in phrases:
        found = phrase.search(text, lo, relax)
        if found is not None and (best is None or found.margin > best[1].margin):
            best = (phrase, found)
    if best is None:
        return None
    phrase, found = best
    span = turn.span(found.start, found.end)
    return Hit(
        phrase.phrase,
        span.text,
        round(found.score, 1),
        span.start_ms,
        span.end_ms,
        turn.party,
        found.by_pinyin,
        (turn.party, turn.number),
        found.end,
        found.margin,
    )


def intent_hit(found: IntentHit, turn: Turn) -> Hit:
    """A `Hit` for an intent match: the phrase is the nearest example ("≈ ..."), the score
    the cosine x 100, the margin over the intent's threshold on the same scale."""
    return Hit(
        f"≈ {found.example}",
        found.text,
        round(100 * found.score, 1),
        found.start_ms,
        found.end_ms,
        turn.party,
        False,
        (turn.party, turn.number),
        len(turn.text.text) if turn.text is not None else 0,
        100 * found.margin,
    )


def stage_hit(
    st: StageState,
    turn: Turn,
    lo: int,
    meant: dict[str, Hit],
    claimed: Callable[[Hit], bool],
) -> Hit | None:
    """All the stage's elements in this turn, at least one of them new in this segment.

    Each element's best hit so far in the turn is kept, so a segment is searched only
    where it can change something: its own text and a phrase's length before it.
    """
    stage = st.stage
    # With several elements, one may fall short of its threshold by up to ELEMENT_RELAX
    # when the others are clearly there: the stage needs its margins to add up to >= 0.
    # ASR damage to one of three phrases no longer loses a whole greeting, while a near
    # miss that lacks an element altogether still scores far below the relaxed bar.
    # A stage already missed may still be sighted late (a pointer for QA, and the order
    # check): with the same benefit of the doubt, but not on words another stage of the
    # turn already claimed ("…anything else I can help you with" is no offer of help).
    late = st.status is StageStatus.MISSED
    relax = ELEMENT_RELAX if len(stage.elements) > 1 and (st.status is None or late) else 0.0
    key = (turn.party, turn.number)
    if st.cache_turn != key:
        st.cache_turn, st.cache = key, [None] * len(stage.elements)
    # A "last N s" stage (the closing) wants the latest wording in a long turn: "thank
    # you" in a greeting must not pair with a farewell a minute later in the same turn.
    later_wins = stage.window.kind is WindowKind.LAST
    fresh = False
    for i, element in enumerate(stage.elements):
        hit = best_hit(element.phrases, turn, lo, relax)
        if hit is None and element.intent is not None:
            hit = meant.get(element.intent.rule)  # this part in the agent's own words
        old = st.cache[i]
        if hit is None or (late and claimed(hit)):
            continue
        if (
            old is None
            or hit.margin > old.margin
            or (later_wins and hit.start_ms > old.start_ms and hit.margin >= min(old.margin, 0.0))
        ):
            st.cache[i] = hit
            fresh = True
    # An optional element found weaker than its absence costs counts as absent: a
    # damaged 您好 must not sink a greeting that would pass without it.
    kept = [
        None if h is not None and e.optional and h.margin < -MISSING_OPTIONAL_PENALTY else h
        for e, h in zip(stage.elements, st.cache, strict=True)
    ]
    hits = [h for h in kept if h is not None]
    missing = [e for e, h in zip(stage.elements, kept, strict=True) if h is None]
    if not fresh or not hits or any(not e.optional for e in missing):
        return None
    if sum(h.margin for h in hits) - MISSING_OPTIONAL_PENALTY * len(missing) < 0:
        return None
    hits.sort(key=lambda h: h.start_ms)
    text = " … ".join(dict.fromkeys(h.matched_text for h in hits))
    return Hit(
        " + ".join(h.phrase for h in hits),
        text,
        min(h.score for h in hits),
        hits[0].start_ms,
        max(h.end_ms for h in hits),
        turn.party,
        any(h.by_pinyin for h in hits),
        key,
        max(h.end_char for h in hits),
    )
