"""Live analysis of one call (sans-I/O): audio quality per party, conversation flow,
scripted-phrase compliance, and the call's grade at the end.

`CallAnalyzer` composes the cores of `audio_quality` (party trackers, conversation tracker,
assessment) and `monitor.qa` (compliance checker) for one call. The runtime feeds it the same
whole frames it records, the transcript segments as they arrive, and DNSMOS scores as the
shared scorer returns them; it returns the cores' own events (readings, dead air, overtalk,
phrase hits and misses) for the runtime to store and publish. No clocks: media time only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from audio_quality.assessment import QualityAssessment, assess
from audio_quality.conversation import ConversationTracker
from audio_quality.dnsmos import DnsmosScore, DnsmosWindow
from audio_quality.party import PartyQualityTracker
from audio_quality.records import (
    ActivitySpan,
    ConversationEvent,
    ConversationSummary,
    PartyQualitySummary,
    QualityReading,
)
from audio_quality.settings import QualitySettings
from config.settings import GradingSettings
from monitor.core.events import Party
from monitor.core.grading import Scorecard, score_call
from monitor.core.metadata import CallMetadata
from monitor.qa import (
    ComplianceChecker,
    ComplianceResult,
    ScriptBook,
    ScriptNotFound,
    agent_name_of,
)
from monitor.qa.events import ComplianceEvent
from monitor.qa.intents import clauses
from monitor.qa.watermark import TranscriptWatermark

#: Why a call's compliance was not checked when the agent's audio was not streamed.
NO_AGENT_LEG = "no_agent_leg"
#: Compliance misses are re-checked this often in media time (a miss is due within 1 s).
ADVANCE_EVERY_MS = 250

#: What the analyzer returns as a call runs: the cores' own events, for the runtime to store
#: and publish (readings, dead air and overtalk, phrase hits, misses and violations).
AnalysisEvent = QualityReading | ConversationEvent | ComplianceEvent


@dataclass(frozen=True, slots=True)
class CallVerdict:
    """Everything known at the end of a call."""

    parties: dict[str, PartyQualitySummary]
    conversation: ConversationSummary
    assessment: QualityAssessment
    compliance: ComplianceResult | None
    score: float
    grade: str
    scorecard: Scorecard


def one_sided(summary: ConversationSummary, absent: tuple[str, ...]) -> ConversationSummary:
    """This summary for a call where `absent` parties were not streamed: the present
    party's talk stands; what needs both parties is emptied (and `absent` says n/a)."""
    if not absent:
        return summary
    return replace(
        summary, absent=absent, agent_talk_ratio=None, non_talk_ms=0, non_talk_ratio=None,
        dead_air_count=0, dead_air_total_ms=0, dead_air_max_ms=0,
        dead_air_longest_start_ms=None, dead_air_longest_end_ms=None, overtalk_count=0,
        overtalk_total_ms=0, overtalk_max_ms=0, agent_interruptions=0,
        customer_interruptions=0, response_gap_count=0, response_gap_mean_ms=None,
        response_gap_max_ms=None,
        first_response_ms=None if "agent" in absent else summary.first_response_ms,
        agent_talk_share=None if "agent" in absent else summary.agent_talk_share,
        customer_talk_share=None if "customer" in absent else summary.customer_talk_share,
    )  # fmt: skip


class CallAnalyzer:
    def __init__(
        self,
        metadata: CallMetadata,
        quality: QualitySettings,
        grading: GradingSettings,
        scripts: ScriptBook | None,
        language: str | None = None,
        codec: str = "l16",
        *,
        batch_phase: float = 0.0,
    ) -> None:
        """`batch_phase` in [0, 1): where this call's audio-analysis batches fall (see
        `PartyQualityTracker`); its parties get phases half a batch apart."""
        self._meta = metadata
        self._quality = quality
        self._grading = grading
        self.trackers = {
            party: PartyQualityTracker(party.value, metadata.sample_rate, codec, quality,
                                       batch_phase=(batch_phase + i / 2) % 1.0)
            for i, party in enumerate(metadata.channel_of)
        }  # fmt: skip
        self.conversation = ConversationTracker(quality)
        # A party whose audio is not streamed (Twilio inbound only, a mono fork) is absent,
        # not silent: the conversation tracker sees it as silence so the present party's
        # talk is measured, and everything between the parties is dropped as n/a.
        self.absent = tuple(p for p in (Party.AGENT, Party.CUSTOMER) if p not in self.trackers)
        # The compliance script depends on the call's language, known for sure only from its
        # first transcript (unless settings force one): the checker starts then. Segments carry
        # media time, so nothing said before that is lost.
        self._scripts = scripts
        self._language = language
        self.checker: ComplianceChecker | None = None
        self.script_problem: str | None = None
        self._watermark = TranscriptWatermark()
        self._frames = 0
        self._advanced_ms = 0

    @property
    def media_ms(self) -> int:
        return self._frames * 1000 // self._meta.sample_rate

    def _start_checker(self, language: str | None) -> None:
        if self.checker is not None or self._scripts is None or self.script_problem:
            return
        if Party.AGENT in self.absent:
            # An agent script judged on a call without the agent's audio fails every stage.
            self.script_problem = NO_AGENT_LEG
            return
        fields = {"queue": self._meta.queue, "to": self._meta.callee, **self._meta.extra}
        try:
            script = self._scripts.select(fields, language or None)
            self.checker = ComplianceChecker(script, agent_name=agent_name_of(fields))
        except ScriptNotFound as exc:
            self.script_problem = str(exc)

    # The switch's hold and IVR-prompt markers: music and prompts are neither talk nor dead
    # air (the conversation tracker), and no party's speech stretch runs across their edges
    # (the party trackers' metric VAD), so they neither start early nor run into a turn.
    def hold_started(self, media_ms: int) -> None:
        self.conversation.hold_started(media_ms)
        self._mark(media_ms)

    def hold_ended(self, media_ms: int) -> None:
        self.conversation.hold_ended(media_ms)
        self._mark(media_ms)

    def ivr_prompt_started(self, media_ms: int) -> None:
        self.conversation.ivr_prompt_started(media_ms)
        self._mark(media_ms)

    def ivr_prompt_ended(self, media_ms: int) -> None:
        self.conversation.ivr_prompt_ended(media_ms)
        self._mark(media_ms)

    def capture_paused(self, media_ms: int) -> None:
        """Capture paused (PCI): a hold for the conversation, and no DNSMOS window that
        overlaps the pause is scored (its samples are zeros in place of the call)."""
        self.hold_started(media_ms)
        for tracker in self.trackers.values():
            tracker.capture_paused(media_ms)

    def capture_resumed(self, media_ms: int) -> None:
        self.hold_ended(media_ms)
        for tracker in self.trackers.values():
            tracker.capture_resumed(media_ms)

    def ivr_prompt(self, start_ms: int, end_ms: int) -> None:
        """A prompt over [start_ms, end_ms), sent as one marker (before, during or after)."""
        self.conversation.ivr_prompt(start_ms, end_ms)
        self._mark(start_ms)
        self._mark(end_ms)

    def _mark(self, media_ms: int) -> None:
        # An edge the audio has passed is left alone: cutting where the VAD now is would
        # split whatever is going on there.
        if media_ms >= self.media_ms:
            for tracker in self.trackers.values():
                tracker.mark_state_change(media_ms)

    def utterance_queued(self, key: object, start_ms: int) -> None:
        self._watermark.on_queued(key, start_ms)

    def utterance_done(self, key: object) -> None:
        """An utterance's transcript was empty or dropped: it no longer holds windows open."""
        self._watermark.on_done(key)

    def feed(self, pcm: bytes, speaking: dict[str, bool] | None = None) -> list[AnalysisEvent]:
        """Whole interleaved frames, as recorded, and whether each party is inside an
        utterance (from the ASR segmenter). Returns readings and live findings."""
        frames = np.frombuffer(pcm, dtype="<i2").reshape(-1, self._meta.channels)
        return self.feed_frames(frames, speaking)

    def feed_frames(
        self, frames: npt.NDArray[np.int16], speaking: dict[str, bool] | None = None
    ) -> list[AnalysisEvent]:
        """`feed` for frames already split into channels (shape (frames, channels))."""
        self._frames += frames.shape[0]
        out: list[AnalysisEvent] = []
        spans = []
        for party, tracker in self.trackers.items():
            channel = self._meta.channel_of[party]
            out.extend(tracker.feed(np.ascontiguousarray(frames[:, channel])))
            spans.extend(tracker.take_activity())
        out.extend(self._conversation(spans))
        self._watermark.on_audio(self.media_ms, speaking or {})
        out.extend(self._advance())
        return self._with_talk(out)

    def _with_talk(self, events: list[AnalysisEvent]) -> list[AnalysisEvent]:
        """Readings carry their party's talk so far from the conversation tracker, the totals
        the stored talk ratio is computed from: the live meter is that figure, not a second
        count of its own."""
        return [
            replace(e, talk_ms=self.conversation.talk_ms(e.party))
            if isinstance(e, QualityReading)
            else e
            for e in events
        ]

    async def prepare_segment(self, text: str) -> None:
        """Encode a segment's clauses for the scripts' intents in the encoder's own thread,
        before `on_segment`: the sentence model never runs on the event loop."""
        encoder = self._scripts.encoder if self._scripts is not None else None
        if encoder is not None:
            await encoder.prepare(c for c, _, _ in clauses(text))

    def on_segment(
        self, key: object, party: str, start_ms: int, end_ms: int, text: str, language: str
    ) -> list[AnalysisEvent]:
        """A transcript segment of the utterance queued as `key`."""
        self.conversation.add_transcript(party, start_ms, end_ms, text, language)
        self._start_checker(self._language or language)
        out: list[AnalysisEvent] = []
        if self.checker is not None:
            out.extend(self.checker.on_segment(party, start_ms, end_ms, text, language))
        self._watermark.on_done(key)
        out.extend(self._advance(force=True))
        return out

    def _conversation(self, spans: list[ActivitySpan]) -> list[AnalysisEvent]:
        if not self.trackers:
            return []
        # The absent party is silence on the present party's timeline; dead air and overtalk
        # found that way are not real, so no event leaves.
        spans += [replace(s, party=p.value, speech=False) for p in self.absent for s in spans]
        events = self.conversation.add_activity(spans)
        return [] if self.absent else list(events)

    def take_dnsmos_windows(self) -> list[DnsmosWindow]:
        windows: list[DnsmosWindow] = []
        for tracker in self.trackers.values():
            windows.extend(tracker.take_dnsmos_windows())
        return windows

    def add_dnsmos(self, score: DnsmosScore) -> None:
        self.trackers[Party(score.party)].add_dnsmos(score)

    def _advance(self, *, force: bool = False) -> list[AnalysisEvent]:
        mark = self._watermark.value
        if self.checker is None or (not force and mark - self._advanced_ms < ADVANCE_EVERY_MS):
            return []
        self._advanced_ms = max(self._advanced_ms, mark)
        return list(self.checker.advance(self._advanced_ms))

    def flush(self) -> list[AnalysisEvent]:
        """End of audio: the last readings, findings and compliance misses."""
        out: list[AnalysisEvent] = []
        spans = []
        for tracker in self.trackers.values():
            out.extend(tracker.flush())
            spans.extend(tracker.take_activity())
        out.extend(self._conversation(spans))
        out.extend(e for e in self.conversation.flush() if not self.absent)
        self._start_checker(self._language)  # a call with no transcript still gets its misses
        if self.checker is not None:
            out.extend(self.checker.close(self.media_ms))
        return self._with_talk(out)  # after the tracker's flush: the final totals

    def finish(self) -> CallVerdict:
        """After `flush` and the last transcript segment: summaries, scores and the grade."""
        parties = {p.value: t.finish() for p, t in self.trackers.items()}
        conversation = one_sided(self.conversation.finish(), tuple(p.value for p in self.absent))
        assessment = assess(list(parties.values()), conversation, self._quality)
        compliance = self.checker.finish(self.media_ms) if self.checker is not None else None
        notes = (NO_AGENT_LEG,) if Party.AGENT in self.absent else ()
        card = score_call(assessment, compliance, self._grading, notes)
        return CallVerdict(
            parties, conversation, assessment, compliance, card.score, card.grade, card
        )
