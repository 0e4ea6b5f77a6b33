"""`SideMixer`: the legs of one side of a call mixed into that side's channel (sans-I/O).

How callwatch stores a call with more than two legs (issue 19 item 13): **two sides, each one
channel.** The customer side is the caller; the agent side is everyone the contact centre puts
on the call: the agent, a supervisor who barges in, a second agent after a transfer or in a
conference. Grades, talk share, overtalk and the agent script are about the contact centre
against the customer, so a supervisor's words count for the agent side, as a customer hears
them. Switches that mix do this already: AudioHook's `internal` channel, Twilio's outbound
track and the fork's write leg carry every agent-side participant. AudioSocket carries one
leg per TCP connection, so a further leg of a side arrives on its own connection:

- **one leg at a time** (a transfer: the first agent's leg ends, the second agent's starts;
  or a leg that reconnects): its audio continues the side's channel from the call's current
  time, the silence between the legs filled by the timeline as for any late leg;
- **legs at the same time** (a barge-in, a conference): their audio is summed, sample by
  sample with int16 saturation, into the side's one channel. Each leg streams in real time,
  so they are summed as they arrive; a leg more than `max_lag` samples behind the others is
  filled with silence so the others are not held back (like `CallTimeline`).

Who joined and left, and when, is in the call's trace (`leg_uuid`, `participant_joined`,
`leg_ended`), so a QA analyst sees the supervisor join at 2:10 on the replay.

With one leg the audio passes through untouched (nothing is buffered or copied). Memory per
extra leg: at most `max_lag` samples.
"""

from __future__ import annotations

import numpy as np


class SideMixer:
    """One side's active legs (by the runtime's own leg ids) and their pending audio."""

    __slots__ = ("max_lag", "_legs")

    def __init__(self, max_lag: int) -> None:
        if max_lag <= 0:
            raise ValueError(f"max_lag must be > 0 samples, got {max_lag}")
        self.max_lag = max_lag
        self._legs: dict[str, bytearray] = {}

    @property
    def legs(self) -> int:
        return len(self._legs)

    def join(self, leg: str) -> None:
        if leg in self._legs:
            raise ValueError(f"leg {leg!r} joined twice")
        self._legs[leg] = bytearray()

    def push(self, leg: str, pcm: bytes) -> bytes:
        """Little-endian int16 audio of `leg`; returns the side's audio ready to emit."""
        if leg not in self._legs:
            raise KeyError(f"leg {leg!r} is not on this side")
        if len(self._legs) == 1:
            return pcm
        self._legs[leg] += pcm
        lead = max(len(b) for b in self._legs.values()) // 2
        for buf in self._legs.values():
            behind = lead - len(buf) // 2 - self.max_lag
            if behind > 0:  # a leg that stalls does not hold the side back
                buf += bytes(2 * behind)
        return self._take(min(len(b) for b in self._legs.values()) // 2)

    def leave(self, leg: str) -> bytes:
        """`leg` ended: what the side still holds, mixed (shorter legs padded with silence);
        from then on the others go on (one left: it passes through again)."""
        n = max((len(b) for b in self._legs.values()), default=0) // 2
        for buf in self._legs.values():
            buf += bytes(2 * n - len(buf))
        out = self._take(n)
        del self._legs[leg]
        return out

    def _take(self, n: int) -> bytes:
        if n == 0:
            return b""
        total = np.zeros(n, dtype=np.int32)
        for buf in self._legs.values():
            total += np.frombuffer(bytes(buf[: 2 * n]), dtype="<i2")
            del buf[: 2 * n]
        return np.clip(total, -32768, 32767).astype("<i2").tobytes()
