"""Which stretches of a call's recording to mask, and how far the recording is checked.

Sans-I/O: `CallAudioRedactor` turns what the transcript redactor released (`SegmentRedacted`
with its `MaskedEntity`s, and the ASR's word times) into frame spans for a `MaskSink` (the
recording, `storage.audio_redaction.RedactingRecorder`, whose `redact` and `confirm` only
queue), and tells it up to which frame the recording is *checked*: heard by ASR and let go by
the redactor, so nothing before it will ever need masking. The storage side does the writes
and keeps that frame in its crash journal (see that module for why in place).

An entity's audio span is the union of the words whose characters overlap what the mask
replaced (`MaskedEntity.src_start/src_end` against `WordTiming.start_char/end_char`), widened
by `pad_ms` on each side (Whisper's word edges are ~0.1-0.2 s off, and a word's end is often
the next word's start) and clamped to the utterance. Where no word maps (no word times, or
normalisation changed the word), the whole utterance is masked: a card number is never left
audible for want of a timestamp. The entities come back with their media times replaced by
the word-timed span, so the `redacted` trace entry says where the number was said.

What is still open, and so not checked: utterances in ASR or deferred to catch-up, segments
the redactor holds, and the utterance being spoken (from where the segmenter opened it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from asr.types import WordTiming
from monitor.privacy.redactor import MaskedEntity, SegmentRedacted

__all__ = ["CallAudioRedactor", "MaskSink", "entity_span_ms"]


class MaskSink(Protocol):
    def redact(self, first: int, end: int) -> None: ...
    def confirm(self, frame: int) -> None: ...


def entity_span_ms(
    seg: SegmentRedacted, entity: MaskedEntity, words: Sequence[WordTiming], pad_ms: int
) -> tuple[int, int, bool]:
    """(start, end) media ms of `entity`'s audio, padded and clamped to `seg`, and whether it
    came from word times (False: the whole segment)."""
    hit = [
        w
        for w in words
        if entity.src_start >= 0 and w.start_char < entity.src_end and w.end_char > entity.src_start
    ]
    if not hit:
        return seg.start_ms, seg.end_ms, False
    start = seg.start_ms + round(min(w.start_s for w in hit) * 1000) - pad_ms
    end = seg.start_ms + round(max(w.end_s for w in hit) * 1000) + pad_ms
    return max(seg.start_ms, start), min(seg.end_ms, max(end, start)), True


class CallAudioRedactor:
    """One call's audio masks and checked frame (module doc)."""

    def __init__(self, sink: MaskSink, sample_rate: int, *, pad_ms: int = 250) -> None:
        if sample_rate < 1:
            raise ValueError(f"sample_rate must be >= 1, got {sample_rate}")
        if not 0 <= pad_ms <= 5000:
            raise ValueError(f"pad_ms must be in 0..5000, got {pad_ms}")
        self._sink = sink
        self._rate = sample_rate
        self._pad_ms = pad_ms
        self.masked_ms = 0  # media ms queued for masking (overlaps counted twice)
        self.untimed = 0  # entities masked as their whole utterance (no word times)

    def frame(self, ms: int) -> int:
        return ms * self._rate // 1000

    def released(
        self,
        segments: list[SegmentRedacted],
        words_of: Callable[[SegmentRedacted], Sequence[WordTiming]],
    ) -> list[SegmentRedacted]:
        """Queue the masks of what the transcript redactor let go; returns the segments
        with each entity's media time from the word times (unpadded)."""
        out = []
        for seg in segments:
            if not seg.entities:
                out.append(seg)
                continue
            words = words_of(seg)
            timed = []
            for e in seg.entities:
                start, end, exact = entity_span_ms(seg, e, words, self._pad_ms)
                self._sink.redact(self.frame(start), -(-end * self._rate // 1000))
                self.masked_ms += end - start
                self.untimed += not exact
                if exact:  # the trace says where it was said, without the safety margin
                    plain = entity_span_ms(seg, e, words, 0)
                    e = dataclasses.replace(e, start_ms=plain[0], end_ms=plain[1])
                timed.append(e)
            out.append(dataclasses.replace(seg, entities=tuple(timed)))
        return out

    def progress(self, now_ms: int, open_from_ms: Iterable[int]) -> None:
        """Media time is `now_ms`; `open_from_ms`: where each open stretch starts (see the
        module doc). Everything before the earliest is checked."""
        self._sink.confirm(self.frame(min([now_ms, *open_from_ms])))

    def unverified(self, spans_ms: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
        """Frame spans of audio that will never be checked (the verdict did not wait for
        its transcript): masked too, like anything not known to be clean."""
        return [(self.frame(a), -(-b * self._rate // 1000)) for a, b in spans_ms if b > a]
