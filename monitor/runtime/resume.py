"""Calls kept open for their switch to reconnect (RELIABILITY.md N3, reconnect and resume).

With `gateway.resume_grace_s` > 0, a websocket call whose connection drops without a close
frame (TCP reset, network loss: end reason `transport`) is not finalised at once: its
`CallFeed` (recording, timeline, session, counts) is parked here for that long. A new
connection of the same protocol whose start names the same switch call id (and the same
audio format) continues it: one call, one recording. The audio the switch could not send
in between becomes silence, so the recording stays on call time:

* protocols with media positions (Twilio `timestamp`, AudioHook `position`): positions that
  continue the call's say where its audio resumes, and the call's timeline fills the jump
  exactly (checked against `max_gap_s` like any jump); positions that start again (a new
  stream counts from 0) are moved to where the wall clock puts them;
* an audio fork (no positions): by the wall clock, at the first audio after the reconnect:
  the time since the last audio before the drop, less the new message's own length (a switch
  streaming in real time sends each piece once it is heard).

The gap is traced (`reconnected`, then `resume_gap` with its samples) and counted in the
call's media counts (`resumes`, `resume_gap_frames`). A Twilio stream's sequence numbers are
checked across the reconnect (`sequence_gaps`). Nobody back within the grace: the call is
finalised `interrupted/transport` as it would have been. Off by default (0): a dropped call
then ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from monitor.runtime.feed import CallFeed
from monitor.runtime.logs import fields
from monitor.wire.events import CallEvent, CallStarted, FramesReceived, PartyAudio
from monitor.wire.twilio import TwilioDecoder

log = logging.getLogger("callwatch.gateway")

#: What finalises a parked call nobody came back for: (feed, detail).
Finish = Callable[[CallFeed, "str | None"], Awaitable[None]]


@dataclass
class Parked:
    feed: CallFeed
    decoder: Any
    protocol: str
    detail: str | None
    dropped_at: float  # time.monotonic() when the connection dropped
    timer: asyncio.Task[None] | None = None


@dataclass
class Resumption:
    """A resumed call's new connection: where its audio goes on the call's timeline."""

    feed: CallFeed
    last_audio_at: float  # the last audio before the drop
    reconnected_at: float
    #: Added to the new connection's media positions: 0 when the switch continued them, else
    #: (positions restarted from 0, as a new stream would) placed by the wall clock.
    offset: int | None = None
    done: bool = False  # the gap is filled and counted

    def _wall_gap(self, samples: int, now: float) -> int:
        """Samples the switch could not send: since the last audio before the drop, less the
        new message's own length (a switch streaming in real time sends each piece once it
        is heard)."""
        assert self.feed.call is not None
        rate = self.feed.call.metadata.sample_rate
        return max(0, int(round((now - self.last_audio_at) * rate)) - samples)

    async def place(self, event: CallEvent, now: float) -> CallEvent:
        """Each decoded event of the new connection before the feed applies it: positions
        moved onto the call's timeline; the gap filled (no positions) and counted."""
        feed, call = self.feed, self.feed.call
        if call is None or feed.timeline is None:
            return event
        if isinstance(event, PartyAudio) and event.position is not None:
            if self.offset is None:
                lead = feed.timeline.lead
                wall = lead + self._wall_gap(len(event.pcm) // 2, now)
                self.offset = 0 if event.position >= lead else wall - event.position
                await self._gap(event.position + self.offset - lead)  # the timeline fills it
            return replace(event, position=event.position + self.offset)
        if isinstance(event, FramesReceived) and not event.filled and not self.done:
            frames = self._wall_gap(len(event.pcm) // call.metadata.frame_bytes, now)
            if frames:
                await feed.handle(FramesReceived(b"", filled=True, silence=frames), now)
            await self._gap(frames)
        return event

    async def _gap(self, frames: int) -> None:
        assert self.feed.call is not None
        self.done = True
        counts = self.feed.extra_counts
        counts["resume_gap_frames"] = counts.get("resume_gap_frames", 0) + frames
        rate = self.feed.call.metadata.sample_rate
        await self.feed.call.trace("resume_gap", filled_samples=frames,
                                   gap_ms=frames * 1000 // rate)  # fmt: skip


class ResumableCalls:
    """Parked calls by (protocol, switch call id); each finalised by `finish` after the grace."""

    def __init__(self, grace_s: float, finish: Finish) -> None:
        if grace_s < 0:
            raise ValueError(f"grace_s must be >= 0, not {grace_s!r}")
        self.grace_s = grace_s
        self._finish = finish
        self._parked: dict[tuple[str, str], Parked] = {}

    def __len__(self) -> int:
        return len(self._parked)

    async def park(self, feed: CallFeed, decoder: Any, protocol: str, detail: str | None) -> bool:
        """Keep a dropped call for the grace; False: it cannot be resumed (finalise it)."""
        call = feed.call
        if self.grace_s <= 0 or call is None or feed.stopped is not None:
            return False
        external = call.metadata.external_id
        if not external or (protocol, external) in self._parked:
            return False
        parked = Parked(feed, decoder, protocol, detail, time.monotonic())
        self._parked[(protocol, external)] = parked
        parked.timer = asyncio.get_running_loop().create_task(
            self._expire((protocol, external), parked), name=f"resume-grace-{call.call_id}"
        )
        await call.trace("connection_lost", detail=detail, resumable_s=self.grace_s)
        log.warning(
            "connection lost: %s; the call may resume for %g s",
            detail, self.grace_s, extra=fields(call_id=call.call_id, protocol=protocol),
        )  # fmt: skip
        return True

    async def take(
        self, protocol: str, started: CallStarted, decoder: Any, now: float
    ) -> Resumption | None:
        """The parked call this start continues (same protocol, switch call id and audio
        format), now attached to the new connection; None: a new call."""
        key = (protocol, started.metadata.external_id or "")
        parked = self._parked.get(key)
        if parked is None or parked.feed.call is None:
            return None
        meta, new = parked.feed.call.metadata, started.metadata
        if (meta.sample_rate, meta.channels) != (new.sample_rate, new.channels):
            return None  # not the same stream: a new call; the parked one runs out
        del self._parked[key]
        if parked.timer is not None:
            parked.timer.cancel()
        if isinstance(decoder, TwilioDecoder) and isinstance(parked.decoder, TwilioDecoder):
            # The switch numbers its messages across the reconnect: the start just read must
            # follow the last message before the drop; anything between was lost.
            old, first = parked.decoder, decoder.last_sequence
            skipped = first - old.last_sequence - 1 if first and old.last_sequence else 0
            decoder.sequence_gaps += old.sequence_gaps + max(0, skipped)
        feed = parked.feed
        feed.extra_counts["resumes"] = feed.extra_counts.get("resumes", 0) + 1
        resumption = Resumption(feed, feed.last_audio_at, now)
        feed.last_audio_at = now  # the stall timer starts again from the reconnect
        await parked.feed.call.trace("reconnected", after_ms=int((now - parked.dropped_at) * 1000))
        log.info("call resumed", extra=fields(call_id=parked.feed.call.call_id))
        return resumption

    async def _expire(self, key: tuple[str, str], parked: Parked) -> None:
        await asyncio.sleep(self.grace_s)
        if self._parked.get(key) is parked:
            del self._parked[key]
            await self._finish(parked.feed, parked.detail)

    async def close(self) -> None:
        """Finalise every parked call now (the server is stopping)."""
        parked, self._parked = list(self._parked.values()), {}
        for p in parked:
            if p.timer is not None:
                p.timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await p.timer
            await self._finish(p.feed, p.detail)
