"""JSON-safe documents from typed values: what goes into an event's free-form fields
(switch payloads, result documents, alert evidence) and into stored documents.

Dataclasses become objects, tuples lists, enums their values, non-finite floats null, and
anything else unknown its `str`: lossy on purpose (a document is for reading, not for
rebuilding the object; typed values travel typed in the events themselves).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)
