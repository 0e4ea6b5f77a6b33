"""What a real call publishes: a real gateway, bus, storage and board in this process
(tests/runtime_support.py), the simulator streaming a real two-party call. Every event is
numbered by its call's one sequencer (0, 1, 2 ... in publish order, no gaps), survives the
wire codec unchanged (the next issue sends these between machines), and what storage holds
is what the bus carried."""

from __future__ import annotations

from collections import defaultdict

from ivr_sim import stream_call
from ivr_sim.stream import call_metadata
from monitor.events import (
    CallEnded,
    CallEvent,
    CallFinalised,
    CallStarted,
    FindingMade,
    Marked,
    ReadingTaken,
    SegmentTranscribed,
    TraceKind,
    from_json,
    to_json,
)
from tests.runtime_support import Rig, rig_factory, script, until

__all__ = ["rig_factory"]  # the fixture


async def test_a_calls_events_are_numbered_once_and_cross_the_wire_unchanged(
    rig_factory,  # type: ignore[no-untyped-def]
) -> None:
    rig: Rig = await rig_factory()
    heard: list[CallEvent] = []
    rig.storage.bus.attach(heard.append)
    call = script("en_billing_8k.toml")
    meta = call_metadata(call)
    await stream_call(rig.gateway.url, call, pace=8.0, metadata=meta)
    await until(lambda: _finalised(heard), 20.0)

    by_call: dict[str, list[CallEvent]] = defaultdict(list)
    for event in heard:
        by_call[event.call_id].append(event)
    [(call_id, events)] = by_call.items()
    assert [e.seq for e in events] == list(range(len(events)))  # one numbering, in order
    kinds = {type(e) for e in events}
    assert {CallStarted, Marked, SegmentTranscribed, ReadingTaken, FindingMade, CallEnded,
            CallFinalised} <= kinds  # fmt: skip
    assert isinstance(events[0], CallStarted) and isinstance(events[-2], CallFinalised)
    last = events[-1]  # the finalised mark: numbering resumes after the highest stored seq
    assert isinstance(last, Marked) and last.kind is TraceKind.FINALISED
    for event in events:  # NaN != NaN: compare the encodings
        text = to_json(event)
        back = from_json(text)
        assert type(back) is type(event) and to_json(back) == text
    marks = [e.kind for e in events if isinstance(e, Marked)]
    assert marks[:2] == [TraceKind.CONNECTED, TraceKind.METADATA]
    assert TraceKind.DISCONNECTED in marks and TraceKind.FINALISED in marks

    stored = await rig.call(str(meta["callid"]))
    assert stored is not None and stored.call_id == call_id
    segments = [e for e in events if isinstance(e, SegmentTranscribed)]
    assert [(s.party, s.start_ms, s.text) for s in stored.segments] == sorted(
        ((s.party, s.start_ms, s.text) for s in segments), key=lambda s: (s[1], s[0])
    )
    traced = {t.seq: t.kind for t in stored.trace}
    assert traced == {e.seq: str(e.kind) for e in events if isinstance(e, Marked)} | {
        e.seq: e.kind for e in events if isinstance(e, FindingMade)
    }


async def _finalised(heard: list[CallEvent]) -> bool:
    return any(isinstance(e, CallFinalised) for e in heard)
