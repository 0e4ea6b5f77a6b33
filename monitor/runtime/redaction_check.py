"""After a crash, the unchecked audio of each recovered recording is *checked*, not blanked.

A recording cut off by `kill -9` keeps its audio-redaction journal (`<recording>.redact`,
storage.audio_redaction): every frame before the journal's confirmed frame was heard by ASR
and cleared by the transcript redactor; what follows (the utterances that were still in ASR,
held by the redactor or being spoken, often tens of seconds when ASR was behind) was never
checked for card numbers. Silencing all of it is safe for PCI DSS but throws away a recording
the contact centre must keep, against the crash-recovery promise (RELIABILITY.md: kill -9
loses at most ~0.5 s and what is kept is sample-exact). So start-up does what the live path
would have done, late:

1. `find_unchecked` (blocking): the calls recovery just closed, and any call of the last two
   days whose journal is still there (a crash *during* a check), with their unchecked span;
2. `segment_unchecked` (blocking): each party's channel of that span, upsampled exactly as
   live, cut into utterances by the same VAD segmenter;
3. each utterance goes to the server's `AsrService` catch-up lane (served only when no live
   call waits, so live transcripts stay fresh) with word times;
4. `monitor.privacy.recovered.redact_recovered` (sans-I/O): the transcript redactor over the
   text, the audio planner over the entities: only the entities' spans (+pad) are masked;
5. the masks are written and synced, the segments stored like catch-up ones (`late`, with
   their `redacted` marks and an `audio_redacted` mark saying `checked`), the journal is
   dropped, and only then is the recording sealed (encryption at rest).

Until step 5 the journal exists, so the recording is withheld: not sealed (sealer.py) and not
served for play or download (the API answers 503). If the check cannot be done (ASR error or
timeout, a file error, or more unchecked audio than `privacy.recovery_check_max_s` per start),
the span is masked from the confirmed frame to the end as before (`recover_redaction`) and the
mark says why (`fallback`): unchecked audio never becomes the final recording. Everything runs
in one background task started after the server is up; file and VAD work in threads. A crash
during the check leaves the journal, and the next start checks again (idempotent but for the
segments, which a crash between storing them and dropping the journal would store twice).
"""

from __future__ import annotations

import asyncio
import logging
import wave
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from asr.language import LanguageTracker
from asr.settings import VadSettings
from asr.types import AsrResult
from audio_quality.resample import Upsampler2x
from config.settings import Settings
from monitor.core.events import ANALYSIS_RATE, Party, UtteranceEnded
from monitor.core.segmenter import UtteranceSegmenter
from monitor.events import CallEvent, CallSequencer, Marked, SegmentTranscribed, TraceKind
from monitor.privacy.recovered import redact_recovered
from monitor.privacy.redactor import SegmentRedacted
from monitor.runtime.asr_service import AsrJob, AsrService
from monitor.runtime.catchup import FILTER_LEAD
from monitor.runtime.logs import fields
from monitor.runtime.storage_rows import rows_for
from storage.audio_redaction import (
    Journal,
    drop_journal,
    mask_spans,
    read_journal,
    recover_redaction,
)
from storage.recordings import repair_wav
from storage.repository import Repository

log = logging.getLogger("callwatch.redaction")
#: How far back start-up looks for a journal a crash during an earlier check left.
LOOKBACK = timedelta(days=2)
#: Calls looked at for such journals (newest first): bounded, whatever the database holds.
MAX_CANDIDATES = 1000
#: Native frames read at once per channel while segmenting (10 s at 16 kHz).
READ_FRAMES = 160_000


class CheckFailed(RuntimeError):
    """The check could not be done; the unchecked span is masked instead."""


@dataclass(frozen=True, slots=True)
class Unchecked:
    """A recovered recording whose audio after `journal.confirmed` was never checked."""

    call_id: str
    path: Path
    sample_rate: int
    frames: int  # audio on disk
    journal: Journal
    channel_of: dict[Party, int] = field(default_factory=dict)

    @property
    def unchecked_ms(self) -> int:
        return max(0, self.frames - self.journal.confirmed) * 1000 // max(1, self.sample_rate)


def unchecked_ms(path: Path, sample_rate: int, frames: int) -> dict[str, int]:
    """Recovery's trace field: how much of the recording awaits the check (none: {})."""
    journal = read_journal(path)
    if journal is None:
        return {}
    return {"unchecked_ms": max(0, frames - journal.confirmed) * 1000 // max(1, sample_rate)}


def find_unchecked(
    repo: Repository, settings: Settings, recovered: Sequence[str]
) -> list[Unchecked]:
    """Blocking: the recordings of closed calls that still have a journal, oldest first."""
    since = datetime.now(UTC) - LOOKBACK
    recent = repo.list_calls(since=since, limit=MAX_CANDIDATES)
    ids = list(dict.fromkeys([*recovered, *(c.call_id for c in recent)]))
    out = []
    for call_id in ids:
        call = repo.get_call(call_id)
        if call is None or call.status == "active":
            continue  # a live call's journal is its own
        path = settings.recordings_dir / call.recording_path
        journal = read_journal(path)
        if journal is None:
            continue
        frames = repair_wav(path) if path.exists() else 0
        roles = {p.value for p in Party}
        channel_of = {Party(p.party): p.channel for p in call.parties if p.party in roles}
        out.append(Unchecked(call.call_id, path, call.sample_rate, frames, journal, channel_of))
    return sorted(out, key=lambda u: u.call_id not in recovered)


def segment_unchecked(u: Unchecked, vad: VadSettings) -> list[UtteranceEnded]:
    """Blocking: each party's utterances in the unchecked span, as the live path cut them
    (16 kHz, call-timeline samples); a channel no party names is segmented as the customer's."""
    out: list[UtteranceEnded] = []
    with wave.open(str(u.path), "rb") as wav:
        rate, channels, frames = wav.getframerate(), wav.getnchannels(), wav.getnframes()
        if ANALYSIS_RATE % rate or wav.getsampwidth() != 2:
            raise CheckFailed(f"recording is not 16-bit PCM at a divisor of {ANALYSIS_RATE} Hz")
        factor = ANALYSIS_RATE // rate
        parties = dict(u.channel_of) or {Party.CUSTOMER: 0}
        for party, channel in parties.items():
            if channel >= channels:
                continue
            first = max(0, u.journal.confirmed - FILTER_LEAD)
            skip = (u.journal.confirmed - first) * factor  # the filter's run-in, as catch-up
            seg, up = UtteranceSegmenter(party, vad), Upsampler2x() if factor == 2 else None
            wav.setpos(min(first, frames))
            found: list[UtteranceEnded] = []
            while raw := wav.readframes(READ_FRAMES):
                x = np.frombuffer(raw, dtype="<i2").reshape(-1, channels)[:, channel].copy()
                y = up.process(x) if up is not None else x
                y, skip = y[skip:], max(0, skip - y.size)
                found += seg.feed(np.ascontiguousarray(y, dtype=np.int16))
            found += seg.finish()
            offset = u.journal.confirmed * factor
            out += [UtteranceEnded(party, e.start_sample + offset, e.end_sample + offset,
                                   e.audio, e.voiced_ms, e.capped) for e in found]  # fmt: skip
    return sorted(out, key=lambda e: (e.start_sample, e.party.value))


def check_events(
    repo: Repository, u: Unchecked, segments: Sequence[SegmentRedacted], **data: object
) -> list[CallEvent]:
    """Blocking (reads the next trace number): the recovered segments, their `redacted`
    marks (types, spans, times; never the text) and the `audio_redacted` mark."""
    seq = CallSequencer(u.call_id, start=repo.next_trace_seq(u.call_id))
    events: list[CallEvent] = []
    for seg in segments:
        r: AsrResult = seg.tag  # type: ignore[assignment]
        events.append(seq.make(
            SegmentTranscribed, media_ms=seg.start_ms, party=seg.party, start_ms=seg.start_ms,
            end_ms=seg.end_ms, text=seg.text, language=r.language, confidence=r.confidence,
            late=True,
        ))  # fmt: skip
        if seg.entities:
            entities = [{"type": e.kind, "mask": e.mask, "chars": [e.start, e.end],
                         "start_ms": e.start_ms, "end_ms": e.end_ms}
                        for e in seg.entities]  # fmt: skip
            events.append(seq.make(Marked, media_ms=seg.start_ms, kind=TraceKind.REDACTED,
                                   party=seg.party, data={"held_ms": seg.held_ms,
                                                          "entities": entities}))  # fmt: skip
    media_ms = u.frames * 1000 // max(1, u.sample_rate)
    events.append(seq.make(Marked, media_ms=media_ms, kind=TraceKind.AUDIO_REDACTED,
                           data={"recovered": True, **data}))  # fmt: skip
    return events


class RedactionCheck:
    """The background task of start-up that checks recovered recordings (module doc)."""

    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        asr: AsrService,
        *,
        on_final: Callable[[Path], Awaitable[object]] | None = None,
    ) -> None:
        self._settings = settings
        self._repo = repo
        self._asr = asr
        self._on_final = on_final
        self._task: asyncio.Task[None] | None = None
        self.checked = 0  # recordings checked
        self.fallbacks = 0  # recordings masked from their confirmed frame instead

    def start(self, recovered: Sequence[str]) -> None:
        self._task = asyncio.create_task(self.run(recovered), name="redaction-check")

    async def stop(self) -> None:
        """Cancel what is under way: its journal stays, and the next start checks it."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def run(self, recovered: Sequence[str]) -> None:
        try:
            found = await asyncio.to_thread(find_unchecked, self._repo, self._settings, recovered)
        except Exception as exc:  # the journals stay: withheld, and the next start retries
            log.error("could not look for recordings to check: %s: %s", type(exc).__name__, exc)
            return
        budget_ms = self._settings.privacy.recovery_check_max_s * 1000
        for u in found:
            if u.unchecked_ms > budget_ms:
                await self._fallback(u, "over_bound")
                continue
            budget_ms -= u.unchecked_ms
            try:
                await self._check(u)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: the span is masked, never left as final
                await self._fallback(u, type(exc).__name__)
                continue
            await self._final(u.path)

    async def _check(self, u: Unchecked) -> None:
        utterances = await asyncio.to_thread(segment_unchecked, u, self._settings.vad)
        results = await self._transcribe(utterances)
        heard = [(u.party.value, u.start_ms, u.end_ms, r)
                 for u, r in zip(utterances, results, strict=True)]  # fmt: skip
        p = self._settings.privacy
        segments, spans, untimed = redact_recovered(
            heard,
            u.sample_rate,
            u.frames * 1000 // max(1, u.sample_rate),
            classes=p.classes,
            hold_ms=p.hold_ms,
            max_held=p.max_held,
            pad_ms=p.audio_pad_ms,
        )
        masked = await asyncio.to_thread(mask_spans, u.path, spans, u.journal.fill)
        events = await asyncio.to_thread(
            check_events, self._repo, u, segments, checked=True, checked_ms=u.unchecked_ms,
            utterances=len(utterances), transcribed=len(segments), untimed=untimed,
            masked_ms=masked * 1000 // max(1, u.sample_rate), fill=u.journal.fill,
        )  # fmt: skip
        await asyncio.to_thread(self._repo.apply, [r for e in events for r in rows_for(e)])
        await asyncio.to_thread(drop_journal, u.path)
        self.checked += 1
        log.info("checked the unchecked audio of a recovered recording",
                 extra=fields(call_id=u.call_id, checked_ms=u.unchecked_ms,
                              masked_ms=masked * 1000 // max(1, u.sample_rate)))  # fmt: skip

    async def _transcribe(self, utterances: Sequence[UtteranceEnded]) -> list[AsrResult]:
        """Every utterance through the catch-up lane; CheckFailed unless all come back."""
        if not utterances:
            return []
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in utterances]
        a = self._settings.asr
        trackers: dict[Party, LanguageTracker] = {}

        def done(fut: asyncio.Future[AsrResult]) -> Callable[..., None]:
            def on_done(job: AsrJob, result: AsrResult | None, problem: str | None) -> None:
                if fut.done():
                    return
                if result is None:
                    fut.set_exception(CheckFailed(f"ASR: {problem}"))
                else:
                    fut.set_result(result)

            return on_done

        for u, fut in zip(utterances, futures, strict=True):
            tracker = trackers.setdefault(u.party, LanguageTracker(
                lock_p=a.language_lock_p, lock_after=a.language_lock_after))  # fmt: skip
            self._asr.submit_catchup(AsrJob(u, language=None, on_done=done(fut), tracker=tracker))
        # Bounded: ASR that is stuck or far behind ends in the fallback, not a withheld file.
        audio_s = sum(len(u.audio) for u in utterances) / ANALYSIS_RATE
        try:
            async with asyncio.timeout(120 + 4 * audio_s):
                return list(await asyncio.gather(*futures))
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
                elif not fut.cancelled():
                    fut.exception()  # retrieved: no "never retrieved" warning

    async def _fallback(self, u: Unchecked, reason: str) -> None:
        self.fallbacks += 1
        log.error(
            "could not check the audio a crash left unchecked (%s): masking it from the last "
            "checked point", reason, extra=fields(call_id=u.call_id, unchecked_ms=u.unchecked_ms),
        )  # fmt: skip
        try:
            frames = await asyncio.to_thread(recover_redaction, u.path) or 0
        except OSError as exc:
            # The journal stays: the file is withheld, and the next start tries again.
            log.error("could not mask a recovered recording: %s", type(exc).__name__,
                      extra=fields(call_id=u.call_id))  # fmt: skip
            return
        masked_ms = frames * 1000 // max(1, u.sample_rate)
        events = await asyncio.to_thread(check_events, self._repo, u, (), checked=False,
                                         fallback=reason, unchecked_masked_ms=masked_ms,
                                         fill=u.journal.fill)  # fmt: skip
        await asyncio.to_thread(self._repo.apply, [r for e in events for r in rows_for(e)])
        await self._final(u.path)

    async def _final(self, path: Path) -> None:
        if self._on_final is not None:
            await self._on_final(path)
