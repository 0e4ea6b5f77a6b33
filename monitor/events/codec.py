"""Lossless JSON for call events: `to_json(event)` and `from_json(text)`.

An encoded event is one JSON object: `{"v": SCHEMA_VERSION, "type": "<class name>", ...fields}`.
Fields are encoded by their declared types (resolved once per class): datetimes as ISO 8601
with their offset, enums as their values, tuples as lists, nested dataclasses as objects, and
a field whose type is a union of several dataclasses (a finding's `detail`) as an object tagged
with `"$type"`. Floats keep every bit (Python's shortest repr); non-finite ones are written as
`NaN` / `Infinity` (what `json` reads back). Decoding checks the version, the type and the
field names: an unknown version or type, a missing or unknown field is an `EventDecodeError`
naming it, never a half-built event.

Bump `SCHEMA_VERSION` when a field changes meaning or goes away; adding a field with a default
is compatible (old payloads decode with the default).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from datetime import datetime
from functools import cache
from typing import Any, Literal, Union

from monitor.events.calls import EVENT_TYPES, CallEvent, JsonValue

__all__ = ["SCHEMA_VERSION", "EventDecodeError", "from_json", "to_json", "REGISTRY"]

SCHEMA_VERSION = 1
#: Type name on the wire -> event class.
REGISTRY: dict[str, type[CallEvent]] = {cls.__name__: cls for cls in EVENT_TYPES}


class EventDecodeError(ValueError):
    """A payload that is not an event this version understands."""


@cache
def _hints(cls: type) -> tuple[tuple[str, Any, bool], ...]:
    """(name, resolved type, required) of each field of dataclass `cls`."""
    hints = typing.get_type_hints(cls)
    return tuple(
        (
            f.name,
            hints[f.name],
            f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING,
        )
        for f in dataclasses.fields(cls)
    )


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _free(tp: Any) -> bool:
    """A free-form JSON field (JsonValue, or the forward reference inside it)."""
    return tp is Any or tp == JsonValue or isinstance(tp, typing.ForwardRef)


def _encode(value: Any, tp: Any) -> Any:
    if value is None:
        return None
    if _free(tp):
        return _json_value(value)
    if _is_union(tp):
        options = [t for t in typing.get_args(tp) if t is not type(None)]
        classes = [t for t in options if dataclasses.is_dataclass(t)]
        if len(classes) > 1:
            cls = type(value)
            if cls not in classes:
                raise TypeError(f"{cls.__name__} is not one of {tp}")
            return {"$type": cls.__name__, **_encode_fields(value)}
        if len(options) == 1:
            return _encode(value, options[0])
        return _encode(value, type(value))
    if dataclasses.is_dataclass(tp):
        return _encode_fields(value)
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime in an event (events carry UTC)")
        return value.isoformat()
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return [_encode(v, args[0]) for v in value]
        return [_encode(v, t) for v, t in zip(value, args, strict=True)]
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return [_encode(v, item) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp) or (str, Any)
        return {str(k): _encode(v, item) for k, v in value.items()}
    return _json_value(value)


def _json_value(value: Any) -> Any:
    """A free-form JSON value (Any, JsonValue): checked, not converted."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} is not a JSON value (lists, not tuples)")


def _encode_fields(obj: Any) -> dict[str, Any]:
    cls: Any = type(obj)
    return {name: _encode(getattr(obj, name), tp) for name, tp, _ in _hints(cls)}


def _decode(raw: Any, tp: Any, where: str) -> Any:
    if _free(tp):
        try:
            return _json_value(raw)
        except TypeError as exc:
            raise EventDecodeError(f"{where}: {exc}") from exc
    if _is_union(tp):
        options = [t for t in typing.get_args(tp) if t is not type(None)]
        if raw is None:
            if len(options) < len(typing.get_args(tp)):
                return None
            raise EventDecodeError(f"{where}: null where a value is required")
        classes: dict[str, type] = {
            t.__name__: t for t in options if isinstance(t, type) and dataclasses.is_dataclass(t)
        }
        if len(classes) > 1:
            if not isinstance(raw, dict) or raw.get("$type") not in classes:
                raise EventDecodeError(f"{where}: unknown or missing $type")
            body = {k: v for k, v in raw.items() if k != "$type"}
            return _decode_fields(classes[raw["$type"]], body, where)
        for option in options:  # an enum before plain str: `TraceKind | str`
            if isinstance(option, type) and issubclass(option, enum.Enum):
                try:
                    return option(raw)
                except ValueError:
                    continue
            if len(options) == 1 or _accepts(option, raw):
                return _decode(raw, option, where)
        raise EventDecodeError(f"{where}: {raw!r} fits none of {tp}")
    if raw is None and tp not in (Any, type(None)):
        raise EventDecodeError(f"{where}: null where a value is required")
    if dataclasses.is_dataclass(tp):
        if not isinstance(raw, dict):
            raise EventDecodeError(f"{where}: expected an object")
        return _decode_fields(tp, raw, where)  # type: ignore[arg-type]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(raw)
        except ValueError as exc:
            raise EventDecodeError(f"{where}: {exc}") from exc
    if tp is datetime:
        try:
            return datetime.fromisoformat(raw)
        except (TypeError, ValueError) as exc:
            raise EventDecodeError(f"{where}: not an ISO 8601 time") from exc
    if tp is float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            return float(raw)
        raise EventDecodeError(f"{where}: expected a number")
    if tp in (int, str, bool):
        if type(raw) is not tp:
            raise EventDecodeError(f"{where}: expected {tp.__name__}")
        return raw
    origin = typing.get_origin(tp)
    if origin is Literal:
        if raw not in typing.get_args(tp):
            raise EventDecodeError(f"{where}: {raw!r} is not one of {typing.get_args(tp)}")
        return raw
    if origin in (tuple, list):
        if not isinstance(raw, list):
            raise EventDecodeError(f"{where}: expected a list")
        args = typing.get_args(tp)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis):
            item = args[0] if args else Any
            items = [_decode(v, item, f"{where}[{i}]") for i, v in enumerate(raw)]
            return tuple(items) if origin is tuple else items
        if len(raw) != len(args):
            raise EventDecodeError(f"{where}: expected {len(args)} items")
        return tuple(
            _decode(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(raw, args, strict=True))
        )
    if origin is dict:
        if not isinstance(raw, dict):
            raise EventDecodeError(f"{where}: expected an object")
        _, item = typing.get_args(tp) or (str, Any)
        return {k: _decode(v, item, f"{where}.{k}") for k, v in raw.items()}
    return raw  # Any / JsonValue: JSON as it came


def _accepts(tp: Any, raw: Any) -> bool:
    """Whether a JSON value could be of `tp` (to pick a union's member)."""
    if tp is float:
        return isinstance(raw, int | float) and not isinstance(raw, bool)
    if tp in (int, str, bool):
        return type(raw) is tp
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        return isinstance(raw, list)
    if origin is dict or dataclasses.is_dataclass(tp):
        return isinstance(raw, dict)
    return tp is datetime and isinstance(raw, str)


def _decode_fields(cls: type, raw: dict[str, Any], where: str) -> Any:
    fields = _hints(cls)
    known = {name for name, _, _ in fields}
    if unknown := sorted(set(raw) - known):
        raise EventDecodeError(f"{where}: unknown field(s) {', '.join(unknown)}")
    args = {}
    for name, tp, required in fields:
        if name in raw:
            args[name] = _decode(raw[name], tp, f"{where}.{name}")
        elif required:
            raise EventDecodeError(f"{where}: missing field {name!r}")
    return cls(**args)


def to_dict(event: CallEvent) -> dict[str, Any]:
    """The event as a JSON-ready dict, with its version and type."""
    cls = type(event)
    if REGISTRY.get(cls.__name__) is not cls:
        raise TypeError(f"{cls.__name__} is not a registered call event")
    return {"v": SCHEMA_VERSION, "type": cls.__name__, **_encode_fields(event)}


def from_dict(doc: Any) -> CallEvent:
    """The event a `to_dict` document describes (`EventDecodeError` when it cannot be)."""
    if not isinstance(doc, dict):
        raise EventDecodeError("an event is a JSON object")
    version, name = doc.get("v"), doc.get("type")
    if version != SCHEMA_VERSION:
        raise EventDecodeError(
            f"event schema version {version!r} not supported (this is {SCHEMA_VERSION})"
        )
    cls = REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise EventDecodeError(f"unknown event type {name!r}")
    body = {k: v for k, v in doc.items() if k not in ("v", "type")}
    event: CallEvent = _decode_fields(cls, body, cls.__name__)
    return event


def to_json(event: CallEvent) -> str:
    return json.dumps(to_dict(event), ensure_ascii=False, separators=(",", ":"))


def from_json(text: str | bytes) -> CallEvent:
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EventDecodeError(f"not JSON: {exc}") from exc
    return from_dict(doc)
