"""The asyncio side of audio redaction (issue 18 item 2): building a call's recorder and the
last masks before the call is closed. (After a crash, start-up checks what the journal left
unchecked: monitor.runtime.redaction_check.)

The planning is `monitor.privacy.audio_redact` (sans-I/O), the bytes and the crash journal
`storage.audio_redaction` (why in place, not a holding area: see there and docs/privacy.md).
The call shell calls in at four places, each marked `[hook: audio redaction]`: it builds its
recorder here, passes released transcript segments through `CallAudioRedactor.released`,
says how far the recording is checked before each flush (`_confirm_audio`), and awaits
`finish_audio_redaction` before its `CallClosed` (which has the recording sealed).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from config.settings import Settings
from monitor.core.events import samples_to_ms
from monitor.events import TraceKind
from monitor.privacy.audio_redact import CallAudioRedactor
from monitor.runtime.logs import fields
from storage.audio_redaction import RedactingRecorder, recover_redaction
from storage.errors import RecordingError
from storage.recordings import WavRecorder

if TYPE_CHECKING:
    from monitor.runtime.call_end import CallEnding

log = logging.getLogger("callwatch.redaction")


def audio_redaction_for(
    settings: Settings, path: Path, sample_rate: int, channels: int
) -> tuple[WavRecorder, CallAudioRedactor | None]:
    """A call's recorder, and its audio redactor when `privacy.redact_audio` (and transcript
    redaction, which finds what to mask) is on."""
    r, p = settings.recording, settings.privacy
    if not (p.redact_audio and p.redact_transcripts):
        return WavRecorder(path, sample_rate, channels, r.flush_interval_s, r.fsync), None
    recorder = RedactingRecorder(
        path, sample_rate, channels, r.flush_interval_s, r.fsync, fill=p.audio_fill
    )
    return recorder, CallAudioRedactor(recorder, sample_rate, pad_ms=p.audio_pad_ms)


async def finish_audio_redaction(call: CallEnding) -> list[Any]:
    """The call's verdict is next: write its last masks, and mask the utterances it never
    got a transcript for (unchecked: they may hold a number), then drop the journal. Returns
    the `audio_redacted` trace entry (counts and times only), or nothing when nothing was
    masked. On a write failure the unchecked part of the recording is masked from the
    journal (as recovery after a crash does) before the call is closed."""
    recorder, planner = call.recorder.opened, call._audio_redactor
    if not isinstance(recorder, RedactingRecorder) or planner is None:
        return []
    failure = call.recorder.failure
    if failure is not None:
        # The disk refused a write (monitor.runtime.recording): the file keeps what it held
        # then, and its journal says how far that was checked. Mask the rest from the journal,
        # as recovery after a crash does, so no unchecked audio stays in the final recording.
        recorder.abandon()
        recovered = await asyncio.to_thread(recover_redaction, recorder.path)
        frames = recovered or 0
        return [call._trace(TraceKind.AUDIO_REDACTED, recording_failed=failure.error,
                            masked_ms=frames * 1000 // recorder.sample_rate)]  # fmt: skip
    open_spans = [(j.utterance.start_ms, j.utterance.end_ms) for j in call._pending]
    open_spans += [
        (samples_to_ms(s.start_sample), samples_to_ms(s.end_sample)) for s in call._deferred.spans
    ]
    unverified = planner.unverified(open_spans)
    try:
        frames = await asyncio.to_thread(recorder.finish_redaction, unverified=unverified)
    except (OSError, RecordingError) as exc:
        log.error(
            "audio redaction could not finish: %s: %s; masking what was not checked",
            type(exc).__name__, exc, extra=fields(**call._log_fields),
        )  # fmt: skip
        recorder.abandon()
        recovered = await asyncio.to_thread(recover_redaction, recorder.path)
        frames = recovered or 0
        return [call._trace(TraceKind.AUDIO_REDACTED, failed=type(exc).__name__,
                            masked_ms=frames * 1000 // recorder.sample_rate)]  # fmt: skip
    if not frames:
        return []
    return [
        call._trace(
            TraceKind.AUDIO_REDACTED,
            media_ms=call.session.duration_ms,
            masked_ms=frames * 1000 // recorder.sample_rate,
            unchecked_ms=sum(b - a for a, b in open_spans),
            untimed=planner.untimed,
            fill=call.settings.privacy.audio_fill,
        )
    ]
