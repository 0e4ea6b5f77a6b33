"""One call's sans-I/O core: the legs and their segmenters (`CallSession`), the live analysis
(`CallAnalyzer`) and the switch's markers, fed the bytes once.

`CallCore.feed(pcm)` splits the interleaved frames once and hands the same array to the
session (utterances for ASR) and to the analysis (readings, dead air, overtalk, compliance
advances), telling the analysis itself which utterances now wait for a transcript (their
`utterance_key`) and which parties are inside one: nothing is carried between the two by
the shell. `apply(marker)` takes a parsed hold / IVR-prompt /
capture marker (`monitor.core.markers`) to both. No clocks, no I/O: the asyncio shell
(`monitor.runtime.call.LiveCall`) records the same bytes, submits the utterances and turns
what the analysis found into events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asr.settings import VadSettings
from monitor.core.analysis import AnalysisEvent, CallAnalyzer
from monitor.core.events import UtteranceEnded
from monitor.core.markers import Marker, MarkerKind
from monitor.core.metadata import CallMetadata
from monitor.core.session import CallSession


def utterance_key(u: UtteranceEnded) -> tuple[str, int]:
    """An utterance's identity in its call (party, first sample): the same for its live and
    its catch-up transcription, so the compliance watermark holds until either is in."""
    return (u.party.value, u.start_sample)


@dataclass(frozen=True, slots=True)
class Fed:
    """What one piece of audio produced."""

    utterances: list[UtteranceEnded]
    found: list[AnalysisEvent]  # the analysis cores' own events, for the shell to publish


class CallCore:
    def __init__(
        self, metadata: CallMetadata, vad: VadSettings, analyzer: CallAnalyzer | None = None
    ) -> None:
        self.metadata = metadata
        self.session = CallSession(metadata, vad)
        self.analyzer = analyzer

    @property
    def duration_ms(self) -> int:
        return self.session.duration_ms

    @property
    def speaking(self) -> dict[str, bool]:
        """Whether each party is inside an utterance now (its ASR segmenter's view)."""
        return {p.value: leg.segmenter.in_speech for p, leg in self.session.legs.items()}

    def feed(self, pcm: bytes) -> Fed:
        m = self.metadata
        if len(pcm) % m.frame_bytes:
            raise ValueError(f"pcm must hold whole frames of {m.frame_bytes} bytes, got {len(pcm)}")
        frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, m.channels)
        utterances = self._queued(self.session.feed_frames(frames))
        found = [] if self.analyzer is None else self.analyzer.feed_frames(frames, self.speaking)
        return Fed(utterances, found)

    def _queued(self, utterances: list[UtteranceEnded]) -> list[UtteranceEnded]:
        # Before the analysis moves on: a compliance window stays open for what was said.
        if self.analyzer is not None:
            for u in utterances:
                self.analyzer.utterance_queued(utterance_key(u), u.start_ms)
        return utterances

    def apply(self, marker: Marker) -> bool:
        """Tell the analysis about a hold / IVR-prompt / capture marker; False when there is
        nothing to apply (no analysis, or a prompt without a span)."""
        a = self.analyzer
        if a is None:
            return False
        kind = marker.kind
        now = self.duration_ms
        if kind is MarkerKind.HOLD_STARTED:
            a.hold_started(now)
        elif kind is MarkerKind.HOLD_ENDED:
            a.hold_ended(now)
        elif kind is MarkerKind.CAPTURE_PAUSED:
            a.capture_paused(now)  # a hold, and no DNSMOS window over the pause
        elif kind is MarkerKind.CAPTURE_RESUMED:
            a.capture_resumed(now)
        elif kind is MarkerKind.IVR_PROMPT_STARTED:
            a.ivr_prompt_started(now)
        elif kind is MarkerKind.IVR_PROMPT_ENDED:
            a.ivr_prompt_ended(now)
        elif marker.has_span and marker.start_ms is not None and marker.end_ms is not None:
            a.ivr_prompt(marker.start_ms, marker.end_ms)
        else:
            return False
        return True

    def finish(self) -> list[UtteranceEnded]:
        """End of audio: the last utterances (the analysis is flushed at the verdict, once
        the last transcripts are in: `analyzer.flush()`)."""
        return self._queued(self.session.finish())
