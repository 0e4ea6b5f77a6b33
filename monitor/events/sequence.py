"""Per-call event numbering: the one place a call's events get their `seq`.

A `CallSequencer` belongs to one call (the live call owns it while the call runs; the
registry keeps it a while after, for the alerts that follow the call's end). Everyone that
makes an event for the call (the call itself, the alert service) makes it through
`sequencer.make(...)`, so the call's events are numbered 0, 1, 2 ... in the order they are
made, with no gaps and no second counter to keep in step.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, TypeVar

from monitor.events.calls import CallEvent

E = TypeVar("E", bound=CallEvent)


def utcnow() -> datetime:
    return datetime.now(UTC)


class CallSequencer:
    def __init__(self, call_id: str, *, start: int = 0) -> None:
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.call_id = call_id
        self._next = start

    @property
    def next_seq(self) -> int:
        """The seq the call's next event gets."""
        return self._next

    def make(
        self, cls: type[E], *, media_ms: int | None, at: datetime | None = None, **fields: Any
    ) -> E:
        """A new event of the call, numbered now."""
        event = cls(
            call_id=self.call_id, seq=self._next, media_ms=media_ms, at=at or utcnow(), **fields
        )
        self._next += 1
        return event
