"""Utterances the live ASR path let go, kept as spans and transcribed later from the recording.

Overload degrades live work in a stated order (see `monitor.runtime.load`): DNSMOS first,
then partial metrics, ASR last, and ASR work is never dropped, only deferred. When the ASR
service lets an utterance go (reason `deferred`, or `queue_full` from a service without a
catch-up lane) its audio is released; the call keeps only the utterance's span here (a few
integers, bounded) and, once the switch has hung up and the recording is closed, reads each
span back from the recording in a worker thread (`read_utterances`), upsampled exactly as
the live path did, and submits it to the ASR service's catch-up lane. The call's verdict
waits for these transcripts, so its stored transcript is complete; they are stored `late`.
"""

from __future__ import annotations

import wave
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from audio_quality.resample import Upsampler2x
from monitor.core.events import ANALYSIS_RATE, Party, UtteranceEnded

#: ASR `on_done` reasons that mean "the audio was released: re-read it from the recording".
CATCH_UP_REASONS = frozenset({"deferred", "queue_full"})
#: Spans one call keeps (a span is five small fields): about 10 hours of back-to-back speech.
MAX_SPANS = 20_000
#: Catch-up utterances one call has in ASR at once (their audio is in memory meanwhile).
CATCH_UP_IN_FLIGHT = 8
#: Native samples read before a span so the upsampling filter starts as the live one did
#: (more than the filter's history; audio_quality.resample.TAPS / 2).
FILTER_LEAD = 256


@dataclass(frozen=True, slots=True)
class Span:
    """Where a released utterance lies (16 kHz samples of the call timeline, like
    `UtteranceEnded`)."""

    party: Party
    start_sample: int
    end_sample: int
    voiced_ms: int
    capped: bool

    @classmethod
    def of(cls, u: UtteranceEnded) -> Span:
        return cls(u.party, u.start_sample, u.end_sample, u.voiced_ms, u.capped)


class DeferredSpans:
    """A call's released utterances, in arrival order, at most `limit` (then counted lost)."""

    def __init__(self, limit: int = MAX_SPANS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._limit = limit
        self._spans: list[Span] = []
        self.total = 0  # spans ever deferred
        self.lost = 0  # over the limit: never transcribed (said in the trace and the log)

    def __len__(self) -> int:
        return len(self._spans)

    @property
    def spans(self) -> tuple[Span, ...]:
        """The spans waiting, oldest first."""
        return tuple(self._spans)

    def add(self, utterance: UtteranceEnded) -> bool:
        """Keep the span; False when the list is full (the utterance is lost)."""
        if len(self._spans) >= self._limit:
            self.lost += 1
            return False
        self._spans.append(Span.of(utterance))
        self.total += 1
        return True

    def take(self, most: int) -> list[Span]:
        """The `most` oldest spans, removed from the list."""
        out, self._spans = self._spans[:most], self._spans[most:]
        return out


def read_utterances(
    path: Path, spans: Iterable[Span], channel_of: dict[Party, int]
) -> list[UtteranceEnded]:
    """Blocking (call it in a worker thread): each span's audio from the call's recording (a
    PCM16 WAV, any channel count, 8 or 16 kHz), as the live path saw it: 16 kHz mono int16,
    `end_sample - start_sample` samples (zeros past the end of the recording)."""
    out: list[UtteranceEnded] = []
    with wave.open(str(path), "rb") as wav:
        rate, channels, frames = wav.getframerate(), wav.getnchannels(), wav.getnframes()
        if ANALYSIS_RATE % rate or wav.getsampwidth() != 2:
            raise ValueError(f"recording {path} is not 16-bit PCM at a divisor of 16 kHz")
        factor = ANALYSIS_RATE // rate
        for span in spans:
            first = max(0, span.start_sample // factor - FILTER_LEAD)
            last = min(frames, -(-span.end_sample // factor))
            wav.setpos(min(first, frames))
            raw = wav.readframes(max(0, last - first))
            pcm = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)
            x = np.ascontiguousarray(pcm[:, channel_of[span.party]], dtype=np.int16)
            if factor == 2:
                x = Upsampler2x().process(x)  # fresh state: zeros before `first`, as live
            x = x[span.start_sample - first * factor :][: span.end_sample - span.start_sample]
            audio = np.zeros(span.end_sample - span.start_sample, dtype=np.int16)
            audio[: x.size] = x
            out.append(
                UtteranceEnded(
                    span.party,
                    span.start_sample,
                    span.end_sample,
                    audio,
                    span.voiced_ms,
                    span.capped,
                )  # fmt: skip
            )
    return out
