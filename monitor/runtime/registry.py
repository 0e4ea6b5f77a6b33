"""The registry of live calls: the one place the transports (websocket gateway, AudioSocket
server), the alert service and the API find a running call, and where a call's event
sequencer is found once the call is gone.

A call is added when a transport opens it and stays until its verdict is made (after the
hang-up its last transcripts may still be arriving, and alerts on it are still numbered by
its own sequencer); then it leaves, and its sequencer is kept among the last `keep_ended`
ended calls, for the alerts its `CallFinalised` raises. For an older call (an alert
acknowledged hours later, or after a restart) `sequencer` resumes numbering after the
call's last stored trace entry (`resume_seq`, read from the database in a thread): a call's
own last event is its `finalised` mark and every alert event has its trace entry, so no
number is given twice.

It is a read-only mapping of call id -> `LiveCall` for everyone but the transports.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from monitor.events import CallSequencer

if TYPE_CHECKING:
    from monitor.runtime.call import LiveCall


class CallRegistry(Mapping[str, "LiveCall"]):
    def __init__(
        self, *, resume_seq: Callable[[str], int] | None = None, keep_ended: int = 1000
    ) -> None:
        self._calls: dict[str, LiveCall] = {}
        self._ended: OrderedDict[str, CallSequencer] = OrderedDict()
        self._resume_seq = resume_seq
        self._keep_ended = keep_ended

    # -- Mapping ---------------------------------------------------------------------------
    def __getitem__(self, call_id: str) -> LiveCall:
        return self._calls[call_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._calls)

    def __len__(self) -> int:
        return len(self._calls)

    # -- transports ------------------------------------------------------------------------
    def add(self, call: LiveCall) -> None:
        if call.call_id in self._calls:
            raise ValueError(f"call {call.call_id} is already registered")
        self._calls[call.call_id] = call

    def release(self, call: LiveCall) -> None:
        """The switch hung up on `call`: it stays until its verdict is made, then leaves."""
        if call.completion is None or call.completion.done():
            self._remove(call)
        else:
            call.completion.add_done_callback(lambda _: self._remove(call))

    def _remove(self, call: LiveCall) -> None:
        if self._calls.get(call.call_id) is call:
            del self._calls[call.call_id]
        self._ended[call.call_id] = call.events
        while len(self._ended) > self._keep_ended:
            self._ended.popitem(last=False)

    # -- numbering -------------------------------------------------------------------------
    def known_sequencer(self, call_id: str) -> CallSequencer | None:
        """The sequencer of a running or recently ended call, without touching the database."""
        call = self._calls.get(call_id)
        return call.events if call is not None else self._ended.get(call_id)

    async def sequencer(self, call_id: str) -> CallSequencer:
        """The sequencer that numbers `call_id`'s next event (running, recent or stored)."""
        known = self.known_sequencer(call_id)
        if known is not None:
            return known
        start = await asyncio.to_thread(self._resume_seq, call_id) if self._resume_seq else 0
        known = self.known_sequencer(call_id)  # made while we read? keep one numbering
        if known is not None:
            return known
        seq = CallSequencer(call_id, start=start)
        self._ended[call_id] = seq
        while len(self._ended) > self._keep_ended:
            self._ended.popitem(last=False)
        return seq
