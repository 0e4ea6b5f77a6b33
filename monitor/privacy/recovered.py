"""Which stretches of a recovered recording to mask, once its unchecked audio is transcribed.

Sans-I/O. After a crash, start-up transcribes the audio a recording's redaction journal did
not confirm checked (monitor.runtime.redaction_check does the I/O) and hands the results
here: the transcript redactor runs over them in media order (a number split over utterances
or parties is found), digits the crash cut short are masked too (`mask_cut_tails`), and the
audio planner turns the entities into frame spans to mask (word times + pad).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

from asr.types import AsrResult
from monitor.privacy.audio_redact import CallAudioRedactor
from monitor.privacy.redactor import (
    MASKS,
    CallRedactor,
    HeardSegment,
    MaskedEntity,
    SegmentRedacted,
)
from monitor.privacy.spoken import Kind, read_units

__all__ = ["CUT_KIND", "mask_cut_tails", "redact_recovered"]

#: Digits a crash cut short are masked as this class (`mask_cut_tails`).
CUT_KIND = "card_data"
CUT_MASK = MASKS[CUT_KIND]


class _Spans:
    """A `MaskSink` that only collects the frame spans to mask."""

    def __init__(self) -> None:
        self.spans: list[tuple[int, int]] = []

    def redact(self, first: int, end: int) -> None:
        if end > first:
            self.spans.append((max(0, first), end))

    def confirm(self, frame: int) -> None:
        pass


def mask_cut_tails(
    segments: Sequence[SegmentRedacted], end_ms: int, hold_ms: int
) -> tuple[list[SegmentRedacted], set[tuple[str, int, int]]]:
    """Digits the crash may have cut short: a segment whose text ends in digits, and that
    ended less than `hold_ms` before the end of the recording, is the one the live
    redactor would still have held for the rest of the number, which the crash lost. The
    part heard (often a card number short of its last digits, so no Luhn check can find
    it) is masked as card data, never kept in clear: in the text, and in the audio from its
    first word (word times) to the end of the recording (`redact_recovered`). Returns the
    segments and the (party, start ms, heard character) of each such mask."""
    out, cuts = [], set()
    for seg in segments:
        heard: str = getattr(seg.tag, "text", "")
        solid = [u for u in read_units(heard) if u.kind is not Kind.JOINER]
        tail = []
        for unit in reversed(solid):
            if unit.kind is not Kind.DIGITS:
                break
            tail.append(unit)
        if seg.end_ms < end_ms - hold_ms or not tail:
            out.append(seg)
            continue
        a, b = tail[-1].start, tail[0].end
        last = max(seg.entities, key=lambda e: e.src_end, default=None)
        if last is not None:
            if last.src_end >= b:
                out.append(seg)  # already masked to its end
                continue
            a = max(a, last.src_end)
        shift = 0 if last is None else last.end - last.src_end  # heard -> redacted text
        at = a + shift
        span = max(1, seg.end_ms - seg.start_ms)
        cut = MaskedEntity(CUT_KIND, CUT_MASK, at, at + len(CUT_MASK),
                           seg.start_ms + span * a // max(1, len(heard)),
                           seg.start_ms + span * b // max(1, len(heard)), a, b)  # fmt: skip
        text = seg.text[:at] + cut.mask + seg.text[b + shift :]
        out.append(dataclasses.replace(seg, text=text, entities=(*seg.entities, cut)))
        cuts.add((seg.party, seg.start_ms, a))
    return out, cuts


def redact_recovered(
    heard: Sequence[tuple[str, int, int, AsrResult]],
    sample_rate: int,
    end_ms: int,
    *,
    classes: Iterable[str],
    hold_ms: int,
    max_held: int,
    pad_ms: int,
) -> tuple[list[SegmentRedacted], list[tuple[int, int]], int]:
    """Sans-I/O: the transcript redactor over the recovered text (in media order, so a
    number split over utterances or parties is found), digits cut short by the crash at
    `end_ms` (`mask_cut_tails`), then the audio planner over what was masked. Returns
    the redacted segments (tag: the `AsrResult`), the frame spans to mask,
    and how many entities had no word times (masked as their whole utterance)."""
    redactor = CallRedactor(classes=classes, hold_ms=hold_ms,
                            max_held=max_held)  # fmt: skip
    released: list[SegmentRedacted] = []
    for party, start_ms, end, r in sorted(heard, key=lambda h: (h[1], h[0])):
        if r.text:
            released += redactor.add(HeardSegment(party, start_ms, end, r.text, r), end)
    released += redactor.flush()
    released, cuts = mask_cut_tails(released, end_ms, hold_ms)
    sink = _Spans()
    planner = CallAudioRedactor(sink, sample_rate, pad_ms=pad_ms)
    segments = planner.released(released, lambda s: s.tag.words)  # type: ignore[attr-defined]
    out = []
    for done in segments:
        entities = []
        for e in done.entities:
            if (done.party, done.start_ms, e.src_start) in cuts:
                # The number went on past the last word heard: masked up to the cut itself
                # (and the trace says so).
                sink.redact(planner.frame(e.start_ms - pad_ms), 1 << 62)
                e = dataclasses.replace(e, end_ms=max(e.end_ms, end_ms))
            entities.append(e)
        out.append(dataclasses.replace(done, entities=tuple(entities)))
    return out, sink.spans, planner.untimed
