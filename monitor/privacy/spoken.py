"""Spoken numbers in transcripts, English and Mandarin, as digits with their source spans.

This module owns the one reading of a transcript that the redaction detectors work on: a list
of `Unit`s, each a digit group, a word or a Han character, pointing back at the characters of
the text it came from (so a mask can replace exactly what was said). Nothing here decides
what is sensitive; `monitor.privacy.detect` does.

What counts as a digit, whatever the ASR wrote:

- decimal digits of any script (ASCII, full width ``４``, Arabic-Indic ...);
- English number words: ``zero`` ``one`` ... ``nine``, ``oh``/``o`` between other digits,
  ``double``/``triple`` + digit (``double one`` -> ``11``), teens and tens (``forty one`` ->
  ``41``, ``eleven`` -> ``11``, the way people read card numbers in pairs), ``hundred`` after
  a digit (``eight hundred`` -> ``800``);
- Chinese numerals read digit by digit: 零 〇 洞 0, 一 幺 1, 二 两 2, 三 ... 九, in any mix with
  Arabic digits (``六二二二 0 八``). 十 百 千 万 are quantities, not digit readings: they end a
  run, so amounts like 两千三百元 never join a card-number run.
- ``x`` / ``X`` / 叉 directly after 17 digits: the check character of a resident ID.

Digit units separated only by spaces, hyphens, commas, full stops, slashes, Chinese list
punctuation or fillers (``uh``, ``um``, 嗯, 呃 ...) belong to one *run*; any other word ends it.
Whether a space or comma came between two units is kept (`Unit.gap`): a spoken pause is where
people group card numbers, and the PAN search anchors its windows there.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass

__all__ = ["WEAK_ZERO", "Kind", "Unit", "read_units"]


class Kind(enum.Enum):
    DIGITS = "digits"
    WORD = "word"  # a Latin word or one Han character (not a numeral)
    JOINER = "joiner"  # punctuation or filler that does not end a digit run


@dataclass(frozen=True, slots=True)
class Unit:
    kind: Kind
    value: str  # digits ("4111", "11"), or the lower-cased word / Han character
    start: int  # character span in the source text
    end: int
    gap: bool = False  # a space, comma or other joiner came right before this unit
    weak: bool = False  # a homophone read as a digit ("for 1111"): may be a plain word


_EN_DIGITS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "nought": "0", "nil": "0",
}  # fmt: skip
_EN_TEENS = {
    "ten": "10", "eleven": "11", "twelve": "12", "thirteen": "13", "fourteen": "14",
    "fifteen": "15", "sixteen": "16", "seventeen": "17", "eighteen": "18", "nineteen": "19",
}  # fmt: skip
_EN_TENS = {
    "twenty": "2", "thirty": "3", "forty": "4", "fifty": "5",
    "sixty": "6", "seventy": "7", "eighty": "8", "ninety": "9",
}  # fmt: skip
WEAK_ZERO = frozenset({"oh", "o"})  # a zero only between other digits
#: Words the ASR writes for a digit it misheard ("for 1111 ..." for "four one one one ..."):
#: a digit only right next to written digits, and dropped again where that makes the number.
_HOMOPHONES = {"for": "4", "fore": "4", "to": "2", "too": "2", "won": "1", "ate": "8"}
_EN_REPEAT = {"double": 2, "triple": 3}
_ZH_DIGITS = {
    "零": "0", "〇": "0", "洞": "0", "一": "1", "幺": "1", "二": "2", "两": "2", "兩": "2",
    "三": "3", "四": "4", "五": "5", "六": "6", "七": "7", "八": "8", "九": "9",
}  # fmt: skip
_ZH_CHECK = frozenset({"叉", "x", "X"})
_FILLERS = frozenset(
    {"uh", "um", "umm", "er", "erm", "ah", "eh", "hmm", "mm", "嗯", "呃", "额", "啊", "唔"}
)
_JOINER_CHARS = frozenset(" \t\n-‐‑–—,.、，。/;；:：·")
_TOKEN = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\S", re.UNICODE)


def _digit_of(ch: str) -> str | None:
    value = unicodedata.decimal(ch, None)
    return None if value is None else str(value)


def _is_han(ch: str) -> bool:
    return "\u3400" <= ch <= "\u9fff" or "\uf900" <= ch <= "\ufaff"


def _raw_tokens(text: str) -> list[tuple[str, int, int]]:
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def read_units(text: str) -> list[Unit]:
    """The transcript as digit groups, words and joiners, in order (see the module docstring).

    Consecutive digits with nothing between them become one DIGITS unit (``4111`` is one unit,
    ``four one one one`` four units); `gap` marks a unit that had whitespace or a joiner before
    it.
    """
    units: list[Unit] = []
    tokens = _raw_tokens(text)
    i = 0
    last_end = 0
    while i < len(tokens):
        tok, start, end = tokens[i]
        gap = start > last_end or (bool(units) and units[-1].kind is Kind.JOINER)
        unit, used = _read_one(tokens, i, gap)
        i += used
        last_end = tokens[i - 1][2]
        if unit.kind is Kind.DIGITS and units and units[-1].kind is Kind.DIGITS and not gap:
            prev = units[-1]  # adjacent digit characters: one group
            unit = Unit(Kind.DIGITS, prev.value + unit.value, prev.start, unit.end, prev.gap)
            units[-1] = unit
            continue
        units.append(unit)
    return _resolve_weak(units, text)


def _read_one(tokens: list[tuple[str, int, int]], i: int, gap: bool) -> tuple[Unit, int]:
    tok, start, end = tokens[i]
    low = tok.lower()
    if len(tok) == 1 and (d := _digit_of(tok)) is not None:
        return Unit(Kind.DIGITS, d, start, end, gap), 1
    if tok in _ZH_DIGITS:
        return Unit(Kind.DIGITS, _ZH_DIGITS[tok], start, end, gap), 1
    if low in _EN_DIGITS:
        digits, used = _EN_DIGITS[low], 1
        nxt = tokens[i + 1][0].lower() if i + 1 < len(tokens) else ""
        if nxt == "hundred":
            digits, used = digits + "00", 2
        return Unit(Kind.DIGITS, digits, start, tokens[i + used - 1][2], gap), used
    if low in _EN_TEENS:
        return Unit(Kind.DIGITS, _EN_TEENS[low], start, end, gap), 1
    if low in _EN_TENS:
        nxt = tokens[i + 1][0].lower() if i + 1 < len(tokens) else ""
        if nxt in _EN_DIGITS and nxt not in ("zero", "nought", "nil"):
            return Unit(
                Kind.DIGITS, _EN_TENS[low] + _EN_DIGITS[nxt], start, tokens[i + 1][2], gap
            ), 2
        return Unit(Kind.DIGITS, _EN_TENS[low] + "0", start, end, gap), 1
    if low in _EN_REPEAT and i + 1 < len(tokens):
        nxt = tokens[i + 1][0].lower()
        digit = _EN_DIGITS.get(nxt) or (_digit_of(nxt) if len(nxt) == 1 else None)
        if digit is None and nxt in WEAK_ZERO:
            digit = "0"
        if digit is not None:
            value = digit * _EN_REPEAT[low]
            return Unit(Kind.DIGITS, value, start, tokens[i + 1][2], gap), 2
    if tok in _JOINER_CHARS or low in _FILLERS:
        return Unit(Kind.JOINER, low, start, end, gap), 1
    if low in WEAK_ZERO:
        return Unit(Kind.WORD, low, start, end, gap), 1  # decided by its neighbours below
    if not low.isalnum() and not _is_han(tok):
        return Unit(Kind.JOINER, low, start, end, gap), 1  # other punctuation, symbols
    return Unit(Kind.WORD, low if not _is_han(tok) else tok, start, end, gap), 1


def _resolve_weak(units: list[Unit], text: str) -> list[Unit]:
    """``oh`` is a zero between digits or right next to one ("oh three twenty seven", "one
    seven one oh"; not "Oh, one more thing"); an ID check character after 17 digits is X."""
    out = list(units)
    for k, unit in enumerate(out):
        if unit.kind is Kind.WORD and unit.value in WEAK_ZERO:
            before = _neighbour(out, k, -1)
            after = _neighbour(out, k, +1)
            nxt = out[k + 1] if k + 1 < len(out) else None
            prev = out[k - 1] if k else None
            touches = (
                nxt is not None and nxt.kind is Kind.DIGITS and text[unit.end : nxt.start] == " "
            ) or (
                prev is not None and prev.kind is Kind.DIGITS and text[prev.end : unit.start] == " "
            )
            # At a segment's edge the other side may be in the next (or previous) segment.
            edge = (before is not None and _neighbour(out, k, +1, edge=True)) or (
                after is not None and _neighbour(out, k, -1, edge=True)
            )
            if (before is not None and after is not None) or touches or edge:
                out[k] = Unit(Kind.DIGITS, "0", unit.start, unit.end, unit.gap)
        elif unit.kind is Kind.WORD and unit.value in _HOMOPHONES and _touches(out, k, text):
            out[k] = Unit(
                Kind.DIGITS, _HOMOPHONES[unit.value], unit.start, unit.end, unit.gap, True
            )
    result: list[Unit] = []
    for unit in out:
        if unit.kind is Kind.DIGITS and result and result[-1].kind is Kind.DIGITS and not unit.gap:
            prev = result.pop()
            unit = Unit(Kind.DIGITS, prev.value + unit.value, prev.start, unit.end, prev.gap)
        result.append(unit)
    return _check_chars(result, text)


def _touches(units: list[Unit], k: int, text: str) -> bool:
    """Written digits right before or after unit `k`, one space between ("for 1111")."""
    u = units[k]
    nxt = units[k + 1] if k + 1 < len(units) else None
    prev = units[k - 1] if k else None
    after = nxt is not None and nxt.kind is Kind.DIGITS and not nxt.weak
    before = prev is not None and prev.kind is Kind.DIGITS and not prev.weak
    return (after and nxt is not None and text[u.end : nxt.start] == " " and nxt.value.isdigit()
            and text[nxt.start].isdigit()) or (
        before and prev is not None and text[prev.end : u.start] == " "
        and text[prev.end - 1].isdigit()
    )  # fmt: skip


def _neighbour(units: list[Unit], k: int, step: int, edge: bool = False) -> Unit | None:
    """The next non-joiner unit if it is a digit (or a weak zero); with `edge`, whether there
    is none at all (the text ends) instead."""
    j = k + step
    while 0 <= j < len(units) and units[j].kind is Kind.JOINER:
        j += step
    if edge:
        return units[k] if not 0 <= j < len(units) else None
    if 0 <= j < len(units) and (units[j].kind is Kind.DIGITS or units[j].value in WEAK_ZERO):
        return units[j]  # "zero oh, oh double zero": a weak zero next to another counts too
    return None


def _check_chars(units: list[Unit], text: str) -> list[Unit]:
    """``...123X`` / ``一二三叉`` / ``1 2 3 ex``: the X of a resident ID becomes digit value
    ``X`` when exactly 17 digits of the run come before it."""
    out: list[Unit] = []
    run = 0
    for unit in units:
        if unit.kind is Kind.DIGITS:
            run += len(unit.value)
        elif unit.kind is Kind.WORD:
            is_x = unit.value in _ZH_CHECK or unit.value in ("x", "ex")
            if is_x and run == 17:
                unit = Unit(Kind.DIGITS, "X", unit.start, unit.end, unit.gap)
                run += 1
            else:
                run = 0
        out.append(unit)
    return out
