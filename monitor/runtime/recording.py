"""A live call's recording when the disk may fail: the call goes on, the recording stops.

`CallRecording` wraps the call's `storage.recordings.WavRecorder` (file format, crash safety)
and owns what happens when the file system refuses a write (RELIABILITY.md S3): disk full
(`ENOSPC`), quota (`EDQUOT`), an I/O error (`EIO`). The call itself must not notice: its ASR,
live metrics, board and alerts carry on, and nothing is raised into the receive loop (before
this, `ENOSPC` closed the switch's socket 1011 and stored the call `interrupted/transport`).

From the failed write on the call is *recording failed*:

* the file keeps the audio written before (the recorder cuts it back to whole frames its header
  describes), so what is there plays; a failure before any audio leaves no file at all, never an
  empty WAV presented as a recording;
* later audio is counted (`frames_lost`) but not written: the recording is not resumed even if
  space comes back, so it never has a silent hole that looks like the call;
* `failure` says when (media ms of the first frame not on disk) and why (the errno name);
  `monitor.runtime.call` turns the first failure into a `recording_failed` trace entry, which
  the alert engine raises as a critical alert at once, and the API marks the call's recording
  as failed from that point.

The event loop never touches the disk here either: writes run in a worker thread, serialised
per call because the receive loop awaits them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from storage.recordings import WavRecorder

log = logging.getLogger("callwatch.recording")


@dataclass(frozen=True, slots=True)
class RecordingFailure:
    """Where and why a call's recording stopped."""

    at_ms: int  # media time of the first audio not on disk
    frames_kept: int  # frames on disk (the recording as it stays)
    error: str  # errno name ("ENOSPC") or the exception's type

    @property
    def reason(self) -> str:
        """In plain words, for logs, alerts and the API."""
        plain = {"ENOSPC": "disk full", "EDQUOT": "disk quota exceeded", "EIO": "disk I/O error",
                 "EROFS": "file system read-only"}  # fmt: skip
        return plain.get(self.error, f"write failed ({self.error})")


def _error_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, type(exc).__name__)


class CallRecording:
    """The call's recording: `append` on the event loop, `flush` / `close` awaited."""

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        channels: int,
        *,
        flush_interval_s: float,
        fsync: bool,
        open_recorder: Callable[[], WavRecorder] | None = None,
    ) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self._block = 2 * channels
        self._frames = 0  # appended, whether written, buffered or lost
        self.failure: RecordingFailure | None = None
        self._rec: WavRecorder | None = None
        self._closed_frames = 0  # what the file held when it was closed
        try:
            # `open_recorder`: another WavRecorder (the redacting one of monitor.runtime.
            # audio_redaction); its creation failing is a recording failure like any other.
            self._rec = (
                open_recorder()
                if open_recorder is not None
                else WavRecorder(path, sample_rate, channels,
                                 flush_interval_s=flush_interval_s, fsync=fsync)
            )  # fmt: skip
        except OSError as exc:  # the recorder removed its file: no recording at all
            self._fail(exc, 0)
        #: The recorder this recording opened, kept after close: audio redaction finishes on
        #: the closed file (monitor.runtime.audio_redaction). None when it could not open.
        self.opened: WavRecorder | None = self._rec

    @property
    def flush_due(self) -> bool:
        return self._rec is not None and self.failure is None and self._rec.flush_due

    @property
    def frames_written(self) -> int:
        """Frames on disk (what a process crash cannot lose; what a failed recording keeps)."""
        if self.failure is not None:
            return self.failure.frames_kept
        return self._closed_frames if self._rec is None else self._rec.frames_written

    @property
    def frames_lost(self) -> int:
        """Frames the call streamed that the recording does not hold (after a failure)."""
        return 0 if self.failure is None else self._frames - self.failure.frames_kept

    def append(self, pcm: bytes) -> None:
        """Buffer the call's next frames (no I/O); after a failure they are only counted."""
        self._frames += len(pcm) // self._block
        if self._rec is not None and self.failure is None:
            self._rec.append(pcm)

    async def flush(self) -> RecordingFailure | None:
        """Write the buffered audio once a flush interval is due. Returns the failure when
        this write is the one that failed (once per call), else None."""
        rec = self._rec
        if rec is None or self.failure is not None or not rec.flush_due:
            return None
        try:
            await asyncio.to_thread(rec.write, rec.drain())
        except OSError as exc:
            return await self._failed(rec, exc)
        return None

    async def close(self) -> tuple[int, RecordingFailure | None]:
        """Write what is left and close: the frames on disk, and the failure if the last
        write is the one that failed (else None: no failure, or one reported before)."""
        rec, self._rec = self._rec, None
        if rec is None:
            return self.frames_written, None
        if self.failure is not None:
            await asyncio.to_thread(self._discard, rec)
            return self.frames_written, None
        try:
            self._closed_frames = await asyncio.to_thread(rec.close)
        except OSError as exc:
            return self.frames_written, await self._failed(rec, exc)
        return self._closed_frames, None

    async def _failed(self, rec: WavRecorder, exc: OSError) -> RecordingFailure:
        failure = self._fail(exc, rec.frames_written)
        await asyncio.to_thread(self._discard, rec)
        return failure

    def _fail(self, exc: OSError, frames_kept: int) -> RecordingFailure:
        self.failure = RecordingFailure(
            at_ms=frames_kept * 1000 // self.sample_rate,
            frames_kept=frames_kept,
            error=_error_name(exc),
        )
        return self.failure

    def _discard(self, rec: WavRecorder) -> None:
        """Release the file after a failure; a recording without a single frame is removed
        (a 44-byte header is not a recording). Blocking: runs in a worker thread."""
        with contextlib.suppress(OSError):
            rec.abandon()
        if self.frames_written == 0:
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)
