"""Card and ID data in what the switch sends besides speech: DTMF digits and metadata fields.

Owns two small sans-I/O pieces the call shell applies before anything becomes a row, a bus
event or a log line:

- `scrub`: a switch metadata mapping or trace payload with sensitive values masked, by key
  name (``cardNumber``, ``cvv``, ``expiryDate``, ``idNumber``, 身份证号 ...: the value becomes
  a typed mask whatever it is) and by content (a string or number holding a Luhn-valid 13-19
  digit card number or a valid 18-character resident ID is masked where it stands). Nested
  mappings and lists are walked. Keys are kept: QA can see that a card number was sent.
- `DtmfMasker`: each key press becomes ``*`` (only the count of presses survives, as the
  number of trace rows); between the switch's secure-entry markers (`privacy.secure_entry_*`
  text-frame events) presses are not traced at all, so not even the length of what was keyed
  is kept. It also recognises the keypad pause / resume sequences (`privacy.pause_keys`,
  `resume_keys`: ``*1`` / ``*2``), keys pressed at most `KEY_GAP_MS` of media time apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from monitor.privacy.redactor import redact_text

__all__ = ["DtmfMasker", "key_mask", "scrub"]

_CONTENT_CLASSES = ("pan", "cn_id")  # what a field's content is searched for
_DIGITS13 = re.compile(r"(?:\d\D{0,2}){13}")  # cheap pre-check: 13+ digits, few separators
#: A UUID's hex groups can hold a Luhn-valid run of digits (a leg id, a conversation id): an
#: identifier, never a card number.
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
_KEYS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("[CVV]", ("cvv", "cvc", "cv2", "securitycode", "cardcode", "cid", "安全码")),
    ("[EXPIRY]", ("expiry", "expiration", "expdate", "expires", "cardexp", "有效期")),
    ("[PAN]", ("cardnumber", "cardno", "cardnum", "pan", "ccnumber", "ccnum", "creditcard",
               "debitcard", "卡号")),
    ("[ACCOUNT]", ("accountnumber", "acctno", "acctnumber", "iban", "账号")),
    ("[身份证号]", ("idnumber", "idcard", "nationalid", "residentid", "sfz", "身份证")),
    ("[REDACTED]", ("ssn", "pin", "passcode", "password", "secret")),
)  # fmt: skip


def key_mask(key: str) -> str | None:
    """The mask for a field named `key` (case, `_`, `-`, `.` and spaces ignored), or None."""
    norm = re.sub(r"[\s_.\-]", "", key.lower())
    for mask, names in _KEYS:
        for name in names:
            # Short names must be the whole key ("pan", "pin", "cid"): "company" is no PAN.
            if norm == name or ((len(name) > 4 or not name.isascii()) and name in norm):
                return mask
    return None


def _scrub_value(value: Any, mask: str | None) -> Any:
    if isinstance(value, dict):
        return {k: _scrub_value(v, key_mask(str(k)) or mask) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(v, mask) for v in value]
    if mask is not None and value not in (None, ""):
        return mask
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and 13 <= len(str(abs(value))) <= 19:
        if len(str(value)) == 13 and str(value)[0] == "1":
            return value  # epoch milliseconds (2001-2286), not a 13-digit card
        return redact_text(str(value), _CONTENT_CLASSES)[0]
    if isinstance(value, str) and _DIGITS13.search(value) and not _UUID.fullmatch(value):
        return redact_text(value, _CONTENT_CLASSES)[0]
    return value


def scrub(data: dict[str, Any]) -> dict[str, Any]:
    """A copy of `data` with card and ID values masked (see the module docstring)."""
    return {k: _scrub_value(v, key_mask(str(k))) for k, v in data.items()}


KEY_GAP_MS = 3000  # a keypad sequence's keys are pressed at most this far apart


class DtmfMasker:
    """Per call: what a key press may leave in the trace, and keypad pause / resume."""

    def __init__(
        self,
        start_events: Iterable[str],
        end_events: Iterable[str],
        *,
        pause_keys: str = "*1",
        resume_keys: str = "*2",
    ) -> None:
        if pause_keys and pause_keys == resume_keys:
            raise ValueError(f"pause_keys and resume_keys must differ, both {pause_keys!r}")
        self._start = frozenset(start_events)
        self._end = frozenset(end_events)
        self.secure = False
        self._sequences = {k: a for k, a in ((pause_keys, "pause"), (resume_keys, "resume")) if k}
        self._longest = max((len(k) for k in self._sequences), default=0)
        self._keys: list[tuple[str, int]] = []  # the last presses (key, media ms)

    def keyed(self, key: str, media_ms: int) -> str | None:
        """One key press: "pause" or "resume" when it completes that sequence, else None.
        Bounded: only the last few presses are kept; the keys are never returned."""
        if not self._longest:
            return None
        if self._keys and media_ms - self._keys[-1][1] > KEY_GAP_MS:
            self._keys = []
        self._keys = [*self._keys, (key.upper()[:1], media_ms)][-self._longest :]
        typed = "".join(k for k, _ in self._keys)
        for sequence, action in self._sequences.items():
            if typed.endswith(sequence):
                self._keys = []
                return action
        return None

    def marker(self, event: object) -> str | None:
        """`secure_entry_started` / `secure_entry_ended` when a text-frame event opens or
        closes a secure-entry stage (trace that instead of the frame), else None."""
        if event in self._start:
            self.secure = True
            return "secure_entry_started"
        if event in self._end:
            self.secure = False
            return "secure_entry_ended"
        return None

    def press(self) -> dict[str, str] | None:
        """Trace data for one key press: the digit masked, or None inside a secure stage."""
        return None if self.secure else {"digit": "*"}
