"""Per-party media timelines: reorder, de-duplicate and gap-fill, then interleave (sans-I/O).

Switches that send each party's audio as its own stream (Twilio tracks with `media.timestamp`,
AudioSocket legs on two TCP connections) give chunks at media positions that may arrive out of
order, twice, or never. `PartyTimeline` turns them into one contiguous stream per party, so the
recording timeline always equals call time:

- a chunk ahead of the expected position is held (reorder window) until its predecessor comes;
  when the held audio spans more than the window, the hole is filled with silence (a gap);
- a chunk wholly before the expected position is a duplicate (or, when the hole it belonged to
  was already filled, a late chunk) and is dropped; a partial overlap is trimmed;
- positions within `tolerance` samples of the expected one snap to it (ms-rounded timestamps).

`CallTimeline` holds one `PartyTimeline` per party (in channel order) and emits interleaved
frames as far as every party has audio. A party more than `max_lag` behind the lead (a track
that stopped, a leg not yet connected) is filled with silence so the others are not held back,
except a party marked `waiting` (a connected AudioSocket leg: no timestamps, so silence would
shift its later audio) - it is waited for up to `HARD_LAG_FACTOR` x `max_lag`.
Counts per party go into the call record (`counts()`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from monitor.core.events import Party


@dataclass(slots=True)
class TimelineCounts:
    chunks: int = 0
    duplicates: int = 0
    reordered: int = 0
    late: int = 0  # arrived after the hole it belonged to was filled with silence
    gaps: int = 0
    gap_samples: int = 0  # silence inserted for missing media (gaps + lag fill)

    def as_dict(self) -> dict[str, int]:
        return {
            "chunks": self.chunks,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "late": self.late,
            "gaps": self.gaps,
            "gap_samples": self.gap_samples,
        }


class PartyTimeline:
    """One party's samples in media order. `push`/`fill_to` return newly contiguous PCM."""

    def __init__(self, *, window: int, tolerance: int = 0) -> None:
        self.window = window
        self.tolerance = tolerance
        self.next_pos = 0  # everything before this has been emitted
        self._received_end = 0  # end of the last chunk received (position=None appends here)
        self._max_seen = -1
        self._pending: dict[int, bytes] = {}
        self.counts = TimelineCounts()
        self._holes: deque[tuple[int, int]] = deque(maxlen=64)  # recent silence fills

    def push(self, position: int | None, pcm: bytes) -> bytes:
        if len(pcm) % 2:
            raise ValueError("PCM must be whole 16-bit samples")
        n = len(pcm) // 2
        if n == 0:
            return b""
        self.counts.chunks += 1
        pos = self._received_end if position is None else position
        if abs(pos - self.next_pos) <= self.tolerance:
            pos = self.next_pos
        out_of_order = pos < self._max_seen
        self._max_seen = max(self._max_seen, pos)
        self._received_end = max(self._received_end, pos + n)
        if pos + n <= self.next_pos + self.tolerance or pos in self._pending:
            if pos + n <= self.next_pos and self._was_filled(pos):
                self.counts.late += 1
            else:
                self.counts.duplicates += 1
            return b""
        if pos < self.next_pos:  # partial overlap: keep the new part only
            pcm = pcm[(self.next_pos - pos) * 2 :]
            pos = self.next_pos
        self.counts.reordered += out_of_order
        self._pending[pos] = pcm
        return self._drain(force_to=None)

    @property
    def received_end(self) -> int:
        """End of the furthest media received (the party's own clock)."""
        return self._received_end

    def fill_to(self, position: int) -> bytes:
        """Emit everything up to `position`, silence where nothing arrived."""
        return self._drain(force_to=position)

    def flush(self) -> bytes:
        """End of stream: emit all held chunks, filling the holes between them."""
        end = max((p + len(b) // 2 for p, b in self._pending.items()), default=self.next_pos)
        return self._drain(force_to=end)

    def _was_filled(self, pos: int) -> bool:
        return any(start <= pos < end for start, end in self._holes)

    def _drain(self, force_to: int | None) -> bytes:
        out = bytearray()
        while True:
            chunk = self._pending.pop(self.next_pos, None)
            if chunk is not None:
                out += chunk
                self.next_pos += len(chunk) // 2
                continue
            if not self._pending:
                if force_to is not None and force_to > self.next_pos:
                    self._gap(out, force_to - self.next_pos)
                return bytes(out)
            first = min(self._pending)
            held_end = max(p + len(b) // 2 for p, b in self._pending.items())
            if first < self.next_pos:  # overlapped by what was emitted meanwhile: trim
                chunk = self._pending.pop(first)
                cut = (self.next_pos - first) * 2
                if cut < len(chunk):
                    self._pending[self.next_pos] = chunk[cut:]
                continue
            limit = force_to if force_to is not None else held_end - self.window
            if limit < first:
                if force_to is not None and force_to > self.next_pos:
                    self._gap(out, force_to - self.next_pos)
                return bytes(out)
            self._gap(out, first - self.next_pos)

    def _gap(self, out: bytearray, samples: int) -> None:
        self.counts.gaps += 1
        self.counts.gap_samples += samples
        self._holes.append((self.next_pos, self.next_pos + samples))
        out += bytes(2 * samples)
        self.next_pos += samples
        self._received_end = max(self._received_end, self.next_pos)


HARD_LAG_FACTOR = 60


class CallTimeline:
    """All parties of a call, interleaved in channel order once every party has the audio."""

    def __init__(
        self, parties: list[Party], *, window: int, max_lag: int, tolerance: int = 0
    ) -> None:
        self.parties = list(parties)
        self.max_lag = max_lag
        self.lines = {p: PartyTimeline(window=window, tolerance=tolerance) for p in self.parties}
        self._ready = {p: bytearray() for p in self.parties}
        self.position = 0  # frames emitted
        self.waiting: set[Party] = set()

    @property
    def lead(self) -> int:
        """The media position just past all media received so far, of any party."""
        return max(max(line.received_end, line.next_pos) for line in self.lines.values())

    def ahead(self, position: int | None) -> int:
        """Samples of silence a chunk at `position` would open ahead of all media received so
        far (0 when it is not ahead): what the gateway bounds before pushing it."""
        if position is None:
            return 0
        return max(0, position - self.lead)

    def push(self, party: Party, position: int | None, pcm: bytes) -> bytes:
        if party not in self.lines:
            raise KeyError(f"party {party.value} is not in this call's layout")
        self._ready[party] += self.lines[party].push(position, pcm)
        return self._emit(final=False)

    def align(self, party: Party) -> bytes:
        """Bring a party (a leg that just joined) level with the lead: silence until now;
        from then on the call waits for its audio (see `waiting`)."""
        lead = max(self.position + len(b) // 2 for b in self._ready.values())
        self._ready[party] += self.lines[party].fill_to(lead)
        self.waiting.add(party)
        return self._emit(final=False)

    def left(self, party: Party) -> bytes:
        """A leg ended: stop waiting for it (silence stands in while others go on)."""
        self.waiting.discard(party)
        return self._emit(final=False)

    def finish(self) -> bytes:
        for p in self.parties:
            self._ready[p] += self.lines[p].flush()
        return self._emit(final=True)

    def counts(self) -> dict[str, dict[str, int]]:
        return {p.value: self.lines[p].counts.as_dict() for p in self.parties}

    def _emit(self, *, final: bool) -> bytes:
        lead = max(len(b) // 2 for b in self._ready.values())
        for p in self.parties:
            have = len(self._ready[p]) // 2
            allowed = self.max_lag * (HARD_LAG_FACTOR if p in self.waiting else 1)
            behind = lead - have if final else lead - have - allowed
            if behind > 0:
                self._ready[p] += self.lines[p].fill_to(self.position + have + behind)
        n = min(len(b) // 2 for b in self._ready.values())
        if n == 0:
            return b""
        cols = [np.frombuffer(bytes(self._ready[p][: 2 * n]), dtype="<i2") for p in self.parties]
        for p in self.parties:
            del self._ready[p][: 2 * n]
        self.position += n
        return np.stack(cols, axis=1).astype("<i2").tobytes()
