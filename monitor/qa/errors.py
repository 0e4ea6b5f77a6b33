"""The compliance package's exceptions."""

from __future__ import annotations

from monitor.errors import MonitorError


class ComplianceError(MonitorError):
    """Base of everything `monitor.qa` raises on purpose."""


class ScriptInvalid(ComplianceError, ValueError):
    """A compliance script file is malformed; the message names the file and the field."""


class ScriptNotFound(ComplianceError, LookupError):
    """No script matches a call and the book has no default or fallback to offer."""


class CheckerFinished(ComplianceError, RuntimeError):
    """A checker was fed after `finish()` (a bug in the caller, not bad input)."""
