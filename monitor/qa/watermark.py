"""The media time up to which a call's transcript is final: what `ComplianceChecker.advance`
must be given, so that a window is never judged while its words are still on their way.

A "first 10 s" window closes at, say, 10.3 s of media time, but an utterance that began at
9 s is still being spoken, then waits for its end silence, then for ASR. `advance(10_300)` at
that moment would report a greeting missed that is about to arrive. The transcript is final
up to the earliest of: the audio received, the start of any utterance still being spoken,
and the start of any utterance still waiting for ASR.

`TranscriptWatermark` tracks that from what the runtime already knows (sans-I/O):

    wm = TranscriptWatermark()
    for each chunk fed to CallSession:
        wm.on_audio(session.duration_ms,
                    {leg.party.value: leg.segmenter.in_speech for leg in session.legs.values()})
        for u in utterances that ended: wm.on_queued(id(u), u.start_ms)
    when ASR returns for u:
        checker.on_segment(...); wm.on_done(id(u)); checker.advance(wm.value)
    and after each chunk: checker.advance(wm.value)

While a party is speaking, its utterance start is not public, so it is taken as the last
audio time at which the party was silent, less `lead_ms` (the segmenter's pad and the
speech it needs before it opens an utterance; 500 ms covers the defaults of 200 + 150 ms).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping


class TranscriptWatermark:
    def __init__(self, lead_ms: int = 500) -> None:
        if lead_ms < 0:
            raise ValueError(f"lead_ms must be >= 0, got {lead_ms}")
        self._lead_ms = lead_ms
        self._audio_ms = 0
        self._silent_at: dict[str, int] = {}  # party -> last audio time it was not speaking
        self._speaking: set[str] = set()
        self._pending: dict[Hashable, int] = {}  # utterance -> start_ms, until transcribed

    def on_audio(self, audio_ms: int, speaking: Mapping[str, bool]) -> None:
        """Audio received up to `audio_ms`; `speaking`: is each party inside an utterance."""
        for party, now in speaking.items():
            if now and party not in self._speaking:
                self._speaking.add(party)
                # Speech opened somewhere in the chunk just fed: at the latest since the
                # previous audio time.
                self._silent_at[party] = self._audio_ms
            elif not now:
                self._speaking.discard(party)
                self._silent_at[party] = audio_ms
        self._audio_ms = max(self._audio_ms, audio_ms)

    def on_queued(self, utterance: Hashable, start_ms: int) -> None:
        """An utterance ended and went to ASR."""
        self._pending[utterance] = start_ms

    def on_done(self, utterance: Hashable) -> None:
        """Its transcript was given to the checker (or ASR dropped it)."""
        self._pending.pop(utterance, None)

    @property
    def value(self) -> int:
        marks = [self._audio_ms, *self._pending.values()]
        marks += [max(0, self._silent_at.get(p, 0) - self._lead_ms) for p in self._speaking]
        return min(marks)
