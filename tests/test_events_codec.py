"""Call events survive JSON exactly (they cross machines next), and a payload this version does
not understand is a clear error, never a half-built event."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import types
import typing
from datetime import UTC, datetime
from typing import Any, Literal, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audio_quality.records import QualityReading
from monitor.events import (
    EVENT_TYPES,
    SCHEMA_VERSION,
    CallSequencer,
    EventDecodeError,
    Marked,
    ReadingTaken,
    TraceKind,
    from_json,
    to_json,
)
from monitor.events.calls import JsonValue

NOW = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    """Values of a declared field type (NaN aside: it equals nothing, checked on its own)."""
    if tp is Any or tp == JsonValue or isinstance(tp, typing.ForwardRef):
        return json_values
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        return st.one_of(*[strategy_for(a) for a in args])
    if tp is type(None):
        return st.none()
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        fields = {f.name: strategy_for(hints[f.name]) for f in dataclasses.fields(tp)}
        return st.builds(tp, **fields)  # type: ignore[arg-type]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(list(tp))
    if tp is datetime:
        return st.datetimes(timezones=st.just(UTC))
    if tp is float:
        return st.floats(allow_nan=False)
    if tp in (int, str, bool):
        return st.from_type(tp)
    if origin is Literal:
        return st.sampled_from(args)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy_for(args[0]), max_size=3).map(tuple)
        return st.tuples(*[strategy_for(a) for a in args])
    if origin is list:
        return st.lists(strategy_for(args[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(), strategy_for(args[1]), max_size=3)
    raise AssertionError(f"no strategy for {tp}")


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda c: c.__name__)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_event_type_round_trips_exactly(cls: type, data: st.DataObject) -> None:
    event = data.draw(strategy_for(cls))
    text = to_json(event)
    back = from_json(text)
    assert type(back) is type(event) and back == event
    assert from_json(text.encode()) == event  # bytes too (a NATS payload)
    assert json.loads(text)["v"] == SCHEMA_VERSION and json.loads(text)["type"] == cls.__name__


def test_events_are_frozen_and_slotted() -> None:
    for cls in EVENT_TYPES:
        params = getattr(cls, "__dataclass_params__")  # noqa: B009
        assert params.frozen and hasattr(cls, "__slots__"), cls.__name__
        names = [f.name for f in dataclasses.fields(cls)][:4]
        assert names == ["call_id", "seq", "media_ms", "at"], cls.__name__


def test_non_finite_floats_and_typed_readings_survive() -> None:
    reading = QualityReading("agent", 3, 0, 2000, 0, 900, -20.5, None, math.inf, math.nan,
                             0, 0.0, 0, 0, 0)  # fmt: skip
    back = from_json(to_json(ReadingTaken("c", 1, 2000, NOW, reading)))
    assert isinstance(back, ReadingTaken) and isinstance(back.reading, QualityReading)
    assert back.reading.noise_level_dbov == math.inf and math.isnan(back.reading.snr_db or 0)


def test_trace_kinds_are_one_spelling() -> None:
    assert Marked("c", 0, 0, NOW, "asr_shed").kind is TraceKind.ASR_SHED
    dtmf = from_json(to_json(Marked("c", 1, 5, NOW, "dtmf", "customer", {"digit": "5"})))
    assert isinstance(dtmf, Marked) and dtmf.kind == "dtmf" and type(dtmf.kind) is str


def test_sequencer_numbers_a_calls_events_in_one_place() -> None:
    seq = CallSequencer("c")
    a = seq.make(Marked, media_ms=0, kind=TraceKind.CONNECTED)
    b = seq.make(Marked, media_ms=10, kind="dtmf")
    assert (a.seq, b.seq, seq.next_seq) == (0, 1, 2) and a.call_id == b.call_id == "c"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"v": 99, "type": "Marked"}, "version 99 not supported"),
        ({"type": "Marked"}, "version None not supported"),
        ({"v": SCHEMA_VERSION, "type": "Exploded"}, "unknown event type 'Exploded'"),
        ({"v": SCHEMA_VERSION}, "unknown event type None"),
        ([1, 2], "an event is a JSON object"),
    ],
)
def test_unknown_version_or_type_is_a_clear_error(doc: Any, message: str) -> None:
    with pytest.raises(EventDecodeError, match=message):
        from_json(json.dumps(doc))


def test_missing_extra_or_mistyped_fields_are_clear_errors() -> None:
    good = json.loads(to_json(Marked("c", 0, None, NOW, TraceKind.CONNECTED)))
    with pytest.raises(EventDecodeError, match="missing field 'seq'"):
        from_json(json.dumps({k: v for k, v in good.items() if k != "seq"}))
    with pytest.raises(EventDecodeError, match="unknown field"):
        from_json(json.dumps({**good, "colour": "red"}))
    with pytest.raises(EventDecodeError, match="Marked.seq: expected int"):
        from_json(json.dumps({**good, "seq": "0"}))
    with pytest.raises(EventDecodeError, match="not JSON"):
        from_json(b"\xff{")
