"""Per-call transcript redaction: segments in, masked segments out, nothing sensitive let through.

`CallRedactor` is sans-I/O (no clock, no tasks): the call shell hands it each transcript
segment as the ASR returns it, with the call's media time, and stores or publishes only what it
gives back. It owns the one decision that makes cross-segment redaction safe:

**Hold back, never retract.** A number can be spread over several segments ("4111 1111" ...
pause ... "1111 1111"), over both parties' turns (the agent's "mm-hm" in between, or the
agent's "what's the security code?" before the customer's "123"). Masking it afterwards would
mean the first half was already stored, sent to the board and to webhooks in clear; a
"redaction update" event cannot unsend a webhook or scrub a browser. So a segment whose digits
run into its end (it may continue) is *held* while the next words may continue it: someone on
the call is still speaking, a later utterance is still in ASR, or less than `hold_ms` of media
time has passed since it ended (a pause between digit groups). Likewise a segment that starts
with digits is held while an earlier utterance of the call is still being transcribed (its
transcript may end with the first part of the number). Segments held together are redacted
together and released at once. Segments without digits at their edges (almost all of them)
pass straight through: the added latency is paid only where a number is being said. The
bounded look-back: at most `max_held` held segments (more forces a release), plus the last
`context_segments` released ones kept for cue words only (never re-emitted).

A number the speaker finishes after a pause longer than `hold_ms` is redacted only in the part
still held: raise `privacy.hold_ms` where callers pause long between digit groups.

Entities keep their type, the span of the mask in the redacted text and an estimate of their
media time (segment time, split in proportion to the characters: faster-whisper word
timestamps are not part of the ASR seam yet).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

from monitor.privacy.detect import CLASSES, Entity, find_entities
from monitor.privacy.spoken import WEAK_ZERO, Kind, Unit, read_units

__all__ = [
    "MASKS",
    "CallRedactor",
    "HeardSegment",
    "MaskedEntity",
    "SegmentRedacted",
    "redact_text",
]

#: The typed masks that replace each class of entity in stored text.
MASKS = {
    "pan": "[PAN]",
    "card_data": "[CARD]",
    "cvv": "[CVV]",
    "expiry": "[EXPIRY]",
    "cn_id": "[身份证号]",
    "account": "[ACCOUNT]",
    "phone": "[PHONE]",
    "email": "[EMAIL]",
}
BACKCHANNEL_WORDS = 3  # a segment of at most this many words (or 2x Han characters), no digits
RECHECK_MS = 250  # how often a wait on speech or ASR is re-checked (media ms)
MAX_WAIT_FACTOR = 4  # a wait on speech or ASR never outlasts this many hold_ms


@dataclass(frozen=True, slots=True)
class HeardSegment:
    """A transcript segment as the ASR returned it (clear text: never store this)."""

    party: str
    start_ms: int
    end_ms: int
    text: str
    tag: object = None  # the caller's own handle, returned untouched


@dataclass(frozen=True, slots=True)
class MaskedEntity:
    kind: str  # see monitor.privacy.detect.CLASSES
    mask: str
    start: int  # the mask's character span in the redacted text
    end: int
    start_ms: int  # estimated media span of what was said
    end_ms: int
    #: What the mask replaced: its character span in the segment's heard text (word times
    #: map it to the audio, monitor.privacy.audio_redact).
    src_start: int = -1
    src_end: int = -1


@dataclass(frozen=True, slots=True)
class SegmentRedacted:
    """A segment safe to store, publish, search and export."""

    party: str
    start_ms: int
    end_ms: int
    text: str
    entities: tuple[MaskedEntity, ...]
    held_ms: int  # media time it waited in the redactor after its end
    tag: object = None


@dataclass(frozen=True, slots=True)
class _Call:
    """What the call shell knows that the redactor cannot: utterances in ASR, live speech."""

    pending: tuple[int, ...]  # start media ms of each utterance still being transcribed
    speaking: bool

    @property
    def busy(self) -> bool:
        return self.speaking or bool(self.pending)


@dataclass(slots=True)
class _Held:
    seg: HeardSegment
    units: list[Unit]
    head_open: bool = field(init=False)
    tail_open: bool = field(init=False)
    last_digit_end: int = field(init=False)
    backchannel: bool = field(init=False)

    def __post_init__(self) -> None:
        solid = [u for u in self.units if u.kind is not Kind.JOINER]
        self.head_open = bool(solid) and solid[0].kind is Kind.DIGITS
        self.tail_open = bool(solid) and solid[-1].kind is Kind.DIGITS
        digits = [u for u in solid if u.kind is Kind.DIGITS]
        self.last_digit_end = digits[-1].end if digits else 0
        words = [u for u in solid if u.kind is Kind.WORD]
        han = sum(1 for u in words if not u.value.isascii())
        # "Oh." may be the last zero of a number, so it is never looked through.
        self.backchannel = (
            len(words) == len(solid)
            and len(words) - han + han / 2 <= BACKCHANNEL_WORDS
            and not any(u.value in WEAK_ZERO for u in words)
        )


def _apply(held: _Held, spans: list[tuple[int, int, str]]) -> tuple[str, tuple[MaskedEntity, ...]]:
    seg, text = held.seg, held.seg.text
    out, entities, pos = [], [], 0
    for start, end, kind in sorted(spans):
        if start < pos:
            continue  # overlaps an entity already masked (precedence: first found)
        out.append(text[pos:start])
        at = sum(len(p) for p in out)
        mask = MASKS[kind]
        out.append(mask)
        span = max(1, seg.end_ms - seg.start_ms)
        entities.append(
            MaskedEntity(
                kind,
                mask,
                at,
                at + len(mask),
                seg.start_ms + span * start // max(1, len(text)),
                seg.start_ms + span * end // max(1, len(text)),
                start,
                end,
            )
        )
        pos = end
    out.append(text[pos:])
    return "".join(out), tuple(entities)


def redact_text(
    text: str, classes: Iterable[str] = CLASSES
) -> tuple[str, tuple[MaskedEntity, ...]]:
    """One piece of text on its own (metadata values, exports, tests): masked text, entities."""
    held = _Held(HeardSegment("", 0, 0, text), read_units(text))
    found = find_entities([held.units], [text], frozenset(classes))
    return _apply(held, [(a, b, e.kind) for e in found for _, a, b in e.spans])


class CallRedactor:
    def __init__(
        self,
        *,
        classes: Iterable[str] = CLASSES,
        hold_ms: int = 5000,
        max_held: int = 8,
        context_segments: int = 4,
    ) -> None:
        unknown = set(classes) - set(CLASSES)
        if unknown:
            raise ValueError(f"privacy classes {sorted(unknown)} unknown: use some of {CLASSES}")
        if hold_ms < 0 or max_held < 1:
            raise ValueError(f"hold_ms ({hold_ms}) must be >= 0 and max_held ({max_held}) >= 1")
        self._classes = frozenset(classes)
        self._hold_ms = hold_ms
        self._max_held = max_held
        self._held: list[_Held] = []
        self._context: deque[_Held] = deque(maxlen=context_segments)
        self._deadline: int | None = None  # media ms when a held segment's wait runs out

    @property
    def holding(self) -> int:
        """Segments waiting for the rest of a number."""
        return len(self._held)

    @property
    def held_from_ms(self) -> int | None:
        """Where the earliest held segment starts (its audio may still need masking)."""
        return min((h.seg.start_ms for h in self._held), default=None)

    def add(
        self,
        seg: HeardSegment,
        now_ms: int,
        *,
        pending: Collection[int] = (),
        speaking: bool = False,
    ) -> list[SegmentRedacted]:
        """A new transcript segment; returns every segment now safe to release.

        `pending`: start (media ms) of each utterance of the call still in ASR; `speaking`:
        someone on the call is mid-utterance (the segmenter has not cut it yet).
        """
        self._held.append(_Held(seg, read_units(seg.text)))
        self._held.sort(key=lambda h: (h.seg.start_ms, h.seg.end_ms))
        force = len(self._held) > self._max_held
        return self._release(now_ms, _Call(tuple(pending), speaking), force=force)

    def tick(
        self, now_ms: int, *, pending: Collection[int] = (), speaking: bool = False
    ) -> list[SegmentRedacted]:
        """Media time moved on: release what may go now (cheap when nothing is due)."""
        if self._deadline is None or now_ms < self._deadline:
            return []
        return self._release(now_ms, _Call(tuple(pending), speaking), force=False)

    def flush(self) -> list[SegmentRedacted]:
        """End of call: everything held, redacted as well as it can be."""
        return self._release(None, _Call((), False), force=True)

    def _release(self, now_ms: int | None, call: _Call, *, force: bool) -> list[SegmentRedacted]:
        if not self._held:
            return []
        stream = list(self._context) + self._held
        transparent = {i for i, h in enumerate(stream) if h.backchannel}
        found: list[Entity] = find_entities(
            [h.units for h in stream], [h.seg.text for h in stream], self._classes, transparent
        )
        base = len(self._context)
        # A segment whose last digits already make a whole card or ID number need not wait:
        # digits said after it join the released ones in the look-back and are masked too.
        complete = {
            s - base
            for e in found
            if e.kind in ("pan", "cn_id")
            for s, _, b in e.spans
            if s >= base and b >= stream[s].last_digit_end
        }
        waiting = set() if force else self._waiting(now_ms, call, complete)
        released: list[SegmentRedacted] = []
        keep: list[_Held] = []
        for i, held in enumerate(self._held):
            if i in waiting:
                keep.append(held)
                continue
            spans = [(a, b, e.kind) for e in found for s, a, b in e.spans if s == base + i]
            text, entities = _apply(held, spans)
            seg = held.seg
            wait = 0 if now_ms is None else max(0, now_ms - seg.end_ms)
            released.append(
                SegmentRedacted(seg.party, seg.start_ms, seg.end_ms, text, entities, wait, seg.tag)
            )
            self._context.append(held)
        self._held = keep
        self._deadline = None
        if keep and now_ms is not None:
            # Re-checked when the silence allowance runs out, or soon while speech or ASR
            # that may continue the number is under way.
            due = min(h.seg.end_ms for h in keep) + self._hold_ms
            self._deadline = min(due, now_ms + RECHECK_MS) if call.busy else due
        return released

    def _waiting(self, now_ms: int | None, call: _Call, complete: set[int]) -> set[int]:
        """Indices of held segments that must wait: their number may not be complete.

        A segment ending in digits waits while the next words may continue them: someone is
        speaking, an utterance after it is still in ASR, or less than `hold_ms` has passed
        since it ended (a pause between digit groups). One starting with digits waits while an
        earlier utterance is still in ASR. Waits on speech and ASR end after
        `MAX_WAIT_FACTOR` x `hold_ms` whatever happens.
        """
        held = self._held
        solid = [i for i, h in enumerate(held) if not h.backchannel]
        wait: set[int] = set()
        for pos, i in enumerate(solid):
            h = held[i]
            fresh = now_ms is None or now_ms < h.seg.end_ms + self._hold_ms
            bounded = now_ms is None or now_ms < h.seg.end_ms + self._hold_ms * MAX_WAIT_FACTOR
            later = call.speaking or any(p > h.seg.start_ms for p in call.pending)
            open_tail = h.tail_open and i not in complete and pos == len(solid) - 1
            if open_tail and (fresh or (later and bounded)):
                wait.add(i)  # what comes next may continue the number
            if h.head_open and bounded and any(p < h.seg.start_ms for p in call.pending):
                wait.add(i)  # an earlier utterance still in ASR may hold its start
        # A chain of segments joined by one digit run waits as a whole.
        changed = True
        while changed:
            changed = False
            for a, b in zip(solid, solid[1:], strict=False):
                joined = held[a].tail_open and held[b].head_open
                if joined and (a in wait) != (b in wait):
                    wait |= {a, b}
                    changed = True
        return wait
