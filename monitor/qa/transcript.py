"""Each party's recent transcript, as one searchable text per turn, with times per character.

This module owns the sliding window that phrases are aligned against. A party's *turn* is its
run of segments until the other party says something substantial (at least
`turn_break_ms` of speech: "mm" and "好的" do not count) or it pauses for `turn_gap_ms`.
Within a turn the segments' normalised texts are joined (with a space between Latin words,
nothing between CJK characters), so a phrase the VAD cut in two still matches, and the
elements of a stage (salutation + service phrase + offer of help) are looked for in one turn,
never across the other party's reply. A turn keeps at most `max_chars` characters: older
segments fall off the front once they have been searched.

Hit positions map back to media time by linear interpolation inside a segment (Whisper gives
no word times on this path): precise to a word or two, which is what "jump to it" needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from monitor.qa.pinyin import is_cjk, keys_to_letters
from monitor.qa.textmatch import BREAKS, NormalizedText

DEFAULT_MAX_CHARS = 600


@dataclass(frozen=True, slots=True)
class Segment:
    party: str
    start_ms: int
    end_ms: int
    norm: NormalizedText


@dataclass(frozen=True, slots=True)
class Span:
    """A hit resolved to media time and the words as transcribed."""

    start_ms: int
    end_ms: int
    text: str


@dataclass(slots=True)
class Turn:
    party: str
    number: int  # 1, 2, ... per party
    max_chars: int = DEFAULT_MAX_CHARS
    segments: list[Segment] = field(default_factory=list)
    _text: list[str] = field(default_factory=list)
    _keys: list[str] = field(default_factory=list)
    _seg: list[int] = field(default_factory=list)  # per char: index into segments
    _pos: list[int] = field(default_factory=list)  # per char: index into that segment's norm
    _letters: list[str] = field(default_factory=list)  # pinyin letters, per segment
    _letter_char: list[int] = field(default_factory=list)  # per letter: index into the text
    _breaks: list[str] = field(default_factory=list)  # per char: punctuation before it
    text: NormalizedText | None = None  # the joined text (source = "")

    @property
    def end_ms(self) -> int:
        return self.segments[-1].end_ms if self.segments else 0

    def append(self, segment: Segment) -> int:
        """Add a segment; returns where its characters start in `self.text`."""
        self._trim(len(segment.norm.text))
        joint = self._text[-1] if self._text else ""
        first = segment.norm.text[:1]
        if joint and first and not (is_cjk(joint) or is_cjk(first)):
            self._letters.append(" ")
            self._letter_char.append(len(self._text))
            self._text.append(" ")
            self._keys.append(" ")
            self._seg.append(len(self.segments))
            self._pos.append(0)
            self._breaks.append("0")
        lo = len(self._text)
        breaks = list(segment.norm.breaks or "0" * len(segment.norm.text))
        if breaks and self.segments and _ends_sentence(self.segments[-1], segment):
            breaks[0] = "1"
        self._breaks.extend(breaks)
        self._letters.append(segment.norm.letters)
        self._letter_char.extend(lo + i for i in segment.norm.letter_char)
        index = len(self.segments)
        self.segments.append(segment)
        self._text.extend(segment.norm.text)
        self._keys.extend(segment.norm.keys)
        self._seg.extend([index] * len(segment.norm.text))
        self._pos.extend(range(len(segment.norm.text)))
        joined = "".join(self._text)
        self.text = NormalizedText(
            "",
            joined,
            tuple(range(len(joined))),
            "".join(self._keys),
            "".join(self._letters),
            tuple(self._letter_char),
            "".join(self._breaks),
        )
        return lo

    def _trim(self, incoming: int) -> None:
        """Drop whole old segments until the new one fits in `max_chars`."""
        if not self.segments or len(self._text) + incoming <= self.max_chars:
            return
        while self.segments and len(self._text) + incoming > self.max_chars:
            drop = self._seg.count(0)
            del self._text[:drop], self._keys[:drop], self._seg[:drop], self._pos[:drop]
            del self._breaks[:drop]
            while self._text and self._text[0] == " ":
                del self._text[0], self._keys[0], self._seg[0], self._pos[0], self._breaks[0]
            self.segments.pop(0)
            self._seg = [s - 1 for s in self._seg]
        # Rebuild the letters from what is left (rare: once per max_chars of speech).
        letters, letter_char = keys_to_letters("".join(self._keys))
        self._letters, self._letter_char = [letters], list(letter_char)

    def _time(self, index: int, end: bool) -> int:
        seg = self.segments[self._seg[index]]
        size = max(1, len(seg.norm.text))
        pos = self._pos[index] + (1 if end else 0)
        return seg.start_ms + (seg.end_ms - seg.start_ms) * pos // size

    def span(self, start: int, end: int) -> Span:
        """Media time and transcript words of normalised characters [start, end)."""
        while start < end - 1 and self._text[start] == " ":
            start += 1
        last = end - 1
        while last > start and self._text[last] == " ":
            last -= 1
        first_seg, last_seg = self._seg[start], self._seg[last]
        a = self.segments[first_seg].norm
        b = self.segments[last_seg].norm
        if first_seg == last_seg:
            text = a.quote(self._pos[start], self._pos[last] + 1)
        else:
            parts = [a.source[a.origin[self._pos[start]] :]]
            parts += [s.norm.source for s in self.segments[first_seg + 1 : last_seg]]
            parts.append(b.source[: b.origin[self._pos[last]] + 1])
            text = " ".join(p.strip() for p in parts if p.strip())
        return Span(self._time(start, end=False), self._time(last, end=True), text)


def _ends_sentence(before: Segment, after: Segment) -> bool:
    """Whether the transcript puts sentence punctuation between two segments of a turn (a
    VAD cut mid-phrase usually has none)."""
    tail, head = before.norm.source.rstrip(), after.norm.source.lstrip()
    return bool(tail and tail[-1] in BREAKS) or bool(head and head[0] in BREAKS)


class PartyTranscripts:
    """The current turn of each party, and the turn-taking rules that end turns."""

    def __init__(
        self, turn_break_ms: int, turn_gap_ms: int, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        self._break_ms = turn_break_ms
        self._gap_ms = turn_gap_ms
        self._max_chars = max_chars
        self._turns: dict[str, Turn] = {}
        self._closed: set[str] = set()
        self._count: dict[str, int] = {}

    def add(self, segment: Segment) -> tuple[Turn, int]:
        """File a segment under its party's turn; returns the turn and where the segment starts."""
        party = segment.party
        if segment.end_ms - segment.start_ms >= self._break_ms:
            self._closed.update(p for p in self._turns if p != party)
        turn = self._turns.get(party)
        if turn is None or party in self._closed or segment.start_ms - turn.end_ms > self._gap_ms:
            self._count[party] = self._count.get(party, 0) + 1
            turn = Turn(party, self._count[party], self._max_chars)
            self._turns[party] = turn
            self._closed.discard(party)
        return turn, turn.append(segment)
