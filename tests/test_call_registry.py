"""The CallRegistry: live calls by id for every transport, alerts and the API; a call stays
until its verdict is made; its sequencer outlives it, and a call known only to the database
resumes numbering after its last stored trace entry."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest

from monitor.events import CallSequencer
from monitor.runtime.registry import CallRegistry


@dataclass
class FakeCall:
    """The part of a LiveCall the registry uses."""

    call_id: str
    events: CallSequencer = field(init=False)
    completion: asyncio.Future[None] | None = None

    def __post_init__(self) -> None:
        self.events = CallSequencer(self.call_id)


async def test_a_call_stays_until_its_verdict_then_its_numbering_lives_on() -> None:
    reg = CallRegistry(resume_seq=lambda call_id: pytest.fail("no database read expected"))
    call = FakeCall("c1")
    reg.add(call)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already registered"):
        reg.add(call)  # type: ignore[arg-type]
    assert list(reg) == ["c1"] and reg["c1"] is call and len(reg) == 1
    call.completion = asyncio.get_running_loop().create_future()
    reg.release(call)  # type: ignore[arg-type]
    assert "c1" in reg  # hung up, verdict pending: alerts still find it
    call.completion.set_result(None)
    await asyncio.sleep(0)
    assert "c1" not in reg and reg.get("c1") is None
    assert await reg.sequencer("c1") is call.events  # the same numbering after it left


async def test_an_old_call_resumes_after_its_last_stored_entry_once() -> None:
    reads: list[str] = []

    def resume(call_id: str) -> int:
        reads.append(call_id)
        return 42

    reg = CallRegistry(resume_seq=resume, keep_ended=2)
    seq = await reg.sequencer("old")
    assert seq.next_seq == 42 and await reg.sequencer("old") is seq and reads == ["old"]
    for other in ("a", "b"):  # only the last `keep_ended` are kept
        await reg.sequencer(other)
    await reg.sequencer("old")
    assert reads == ["old", "a", "b", "old"]
