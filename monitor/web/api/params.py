"""Request parameter helpers shared by the routers."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import HTTPException

# Dates outside this window cannot be stored on every backend (and are never real calls).
_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def aware(value: datetime | None, name: str) -> datetime | None:
    """A query time as timezone-aware UTC: a time without zone is taken as UTC."""
    if value is None:
        return None
    try:
        value = value.replace(tzinfo=UTC) if value.utcoffset() is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise HTTPException(400, f"{name}: time out of range") from None
    return min(max(value, _EARLIEST), _LATEST)
