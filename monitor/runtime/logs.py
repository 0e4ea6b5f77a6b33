"""Structured logging: one line per event, `key=value` text or JSON, never audio or secrets.

Call-scoped fields (call_id, external_id, peer) travel in `extra={"fields": {...}}` so log
shippers can index them; the message itself stays a short, stable event name plus prose.

Every line, at every level and from every library (uvicorn's access log, a traceback), goes
through `scrub` before it is written: credentials in headers (`Authorization`, cookies,
signatures, API keys), secret query parameters (`?token=`), secret JSON fields, DTMF digits,
base64 media payloads and Luhn-valid card numbers are masked. websockets' own DEBUG logger
(which dumps handshake headers and every frame: audio, metadata, DTMF) is never enabled.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_MASK = "[redacted]"
_SECRET_WORDS = (
    r"(?:token|access_token|api_key|apikey|key|signature|sig|password|passwd|secret|auth)"
)
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    # Header lines and header-like pairs: keep the name, drop the value.
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-twilio-signature|x-api-key|"
            r"signature|signature-input)(['\"]?\s*[:=]\s*['\"]?)[^\r\n'\"]+"
        ),
        rf"\1\2{_MASK}",
    ),
    # (prose like "bearer token not accepted" is left alone)
    (re.compile(r"(?i)\b(bearer|basic|digest)\s+(?!token\b)[A-Za-z0-9._~+/=:-]+"), rf"\1 {_MASK}"),
    (re.compile(rf"(?i)([?&;]{_SECRET_WORDS}=)[^&\s'\"#]+"), rf"\1{_MASK}"),
    (re.compile(rf"(?i)(\"{_SECRET_WORDS}\"\s*:\s*\")[^\"]*"), rf"\1{_MASK}"),
    (re.compile(r"(?i)(\"(?:digit|digits|dtmf)\"\s*:\s*\"?)[^\",}]*"), r"\1*"),
    (re.compile(r"(?i)(\"payload\"\s*:\s*\")[A-Za-z0-9+/=]{16,}"), rf"\1{_MASK}"),
)
_DIGIT_RUN = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")


def luhn(digits: str) -> bool:
    """Whether `digits` passes the Luhn check (as every card number does)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _pan(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group())
    return "[card]" if luhn(digits) else match.group()


def scrub(line: str) -> str:
    """`line` with credentials, DTMF, media payloads and card numbers masked."""
    for pattern, repl in _RULES:
        line = pattern.sub(repl, line)
    return _DIGIT_RUN.sub(_pan, line)


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        doc.update(getattr(record, "fields", {}))
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return scrub(json.dumps(doc, ensure_ascii=False, default=str))


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        return scrub(line)


def formatter(fmt: str = "text") -> logging.Formatter:
    """The formatter every callwatch log line goes through (`scrub` included)."""
    return _JsonFormatter() if fmt == "json" else _TextFormatter()


def quiet_libraries() -> None:
    """Library loggers held above DEBUG whatever `log_level` says."""
    # websockets logs every failed handshake with a traceback at ERROR; ours says it better.
    # Never DEBUG, whatever `log_level`: it would dump headers and every frame (audio, DTMF).
    logging.getLogger("websockets").setLevel(logging.WARNING)
    # httpcore (under httpx: webhook deliveries, HTTP clients) traces ten phases of every
    # request at DEBUG: on a busy loop that cost alone made a flood test's connections time
    # out (measured: tests/test_api_login_flood.py); httpx's own INFO line says the request.
    logging.getLogger("httpcore").setLevel(logging.INFO)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    quiet_libraries()


def fields(**kw: Any) -> dict[str, Any]:
    """`log.info("...", extra=fields(call_id=...))`, dropping empty values."""
    return {"fields": {k: v for k, v in kw.items() if v is not None}}
