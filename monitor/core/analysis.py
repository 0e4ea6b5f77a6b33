"""Live analysis of one call (sans-I/O): audio quality per party, conversation flow,
scripted-phrase compliance, and the call's grade at the end.

`CallAnalyzer` composes the cores of `audio_quality` (party trackers, conversation tracker,
assessment) and `monitor.qa` (compliance checker) for one call. The runtime feeds it the same
whole frames it records, the transcript segments as they arrive, and DNSMOS scores as the
shared scorer returns them; it returns the cores' own events (readings, dead air, overtalk,
phrase hits and misses) for the runtime to store and publish. No clocks: media time only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from audio_quality.conversation import ConversationSummary, ConversationTracker
from audio_quality.dnsmos import DnsmosScore, DnsmosWindow
from audio_quality.party import PartyQualityTracker
from audio_quality.records import PartyQualitySummary
from audio_quality.settings import QualitySettings
from config.settings import GradingSettings
from monitor.core.events import Party
from monitor.core.metadata import CallMetadata
from monitor.qa import ComplianceChecker, ComplianceResult, ComplianceScript

#: Compliance misses are re-checked this often in media time (a miss is due within 1 s).
ADVANCE_EVERY_MS = 250


@dataclass(frozen=True, slots=True)
class CallVerdict:
    """Everything known at the end of a call."""

    parties: dict[str, PartyQualitySummary]
    conversation: ConversationSummary
    assessment: Any  # audio_quality.assess.QualityAssessment
    compliance: ComplianceResult | None
    score: float
    grade: str


def grade_of(score: float, grading: GradingSettings) -> str:
    if score >= grading.excellent:
        return "excellent"
    if score >= grading.good:
        return "good"
    if score >= grading.passing:
        return "pass"
    return "needs_improvement"


class CallAnalyzer:
    def __init__(
        self,
        metadata: CallMetadata,
        quality: QualitySettings,
        grading: GradingSettings,
        script: ComplianceScript | None,
        codec: str = "l16",
    ) -> None:
        self._meta = metadata
        self._quality = quality
        self._grading = grading
        self.trackers = {
            party: PartyQualityTracker(party.value, metadata.sample_rate, codec, quality)
            for party in metadata.channel_of
        }
        self.conversation = ConversationTracker(quality)
        self.checker = ComplianceChecker(script) if script is not None else None
        self._frames = 0
        self._advanced_ms = 0

    @property
    def media_ms(self) -> int:
        return self._frames * 1000 // self._meta.sample_rate

    def feed(self, pcm: bytes) -> list[Any]:
        """Whole interleaved frames, as recorded. Returns readings and live findings."""
        frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, self._meta.channels)
        self._frames += frames.shape[0]
        out: list[Any] = []
        spans = []
        for party, tracker in self.trackers.items():
            channel = self._meta.channel_of[party]
            out.extend(tracker.feed(np.ascontiguousarray(frames[:, channel])))
            spans.extend(tracker.take_activity())
        if len(self.trackers) == 2:  # conversation needs both parties on their own channel
            out.extend(self.conversation.add_activity(spans))
        out.extend(self._advance())
        return out

    def on_segment(
        self, party: str, start_ms: int, end_ms: int, text: str, language: str
    ) -> list[Any]:
        self.conversation.add_transcript(party, start_ms, end_ms, text, language)
        if self.checker is None:
            return []
        return list(self.checker.on_segment(party, start_ms, end_ms, text, language))

    def take_dnsmos_windows(self) -> list[DnsmosWindow]:
        windows: list[DnsmosWindow] = []
        for tracker in self.trackers.values():
            windows.extend(tracker.take_dnsmos_windows())
        return windows

    def add_dnsmos(self, score: DnsmosScore) -> None:
        self.trackers[Party(score.party)].add_dnsmos(score)

    def _advance(self) -> list[Any]:
        if self.checker is None or self.media_ms - self._advanced_ms < ADVANCE_EVERY_MS:
            return []
        self._advanced_ms = self.media_ms
        return list(self.checker.advance(self.media_ms))

    def flush(self) -> list[Any]:
        """End of audio: the last readings, findings and compliance misses."""
        out: list[Any] = []
        spans = []
        for tracker in self.trackers.values():
            out.extend(tracker.flush())
            spans.extend(tracker.take_activity())
        if len(self.trackers) == 2:
            out.extend(self.conversation.add_activity(spans))
            out.extend(self.conversation.flush())
        if self.checker is not None:
            out.extend(self.checker.close(self.media_ms))
        return out

    def finish(self) -> CallVerdict:
        """After `flush` and the last transcript segment: summaries, scores and the grade."""
        from audio_quality.assess import assess

        parties = {p.value: t.finish() for p, t in self.trackers.items()}
        conversation = self.conversation.finish()
        assessment = assess(list(parties.values()), conversation, self._quality)
        compliance = self.checker.finish(self.media_ms) if self.checker is not None else None
        g = self._grading
        if compliance is None:
            score = float(assessment.score)
        else:
            score = g.quality_weight * assessment.score + (1 - g.quality_weight) * compliance.score
        grade = grade_of(score, g)
        if compliance is not None and compliance.critical:
            grade = "needs_improvement"  # a critical miss or forbidden phrase fails the call
        return CallVerdict(parties, conversation, assessment, compliance, round(score, 1), grade)
