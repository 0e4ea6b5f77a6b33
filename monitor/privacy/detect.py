"""Which spoken digits are card numbers, codes, ID numbers, accounts or phone numbers.

Sans-I/O and stateless: `find_entities` takes the units (`monitor.privacy.spoken`) of several
consecutive transcript segments, in media-time order, and returns the entities found, each as
character spans in the segments it touches. The stateful part (which segments to join, when to
release them) is `monitor.privacy.redactor`.

Rules, in order of precedence (a digit belongs to at most one entity):

- ``pan``: a Luhn-valid run of 13-19 digits. Inside a longer run (a card number followed by its
  expiry and code in one breath, or read back by the agent straight after the customer) a
  window of card length counts when it starts and ends where the speaker paused (a space,
  comma or segment boundary); so does a window of a 13-19 digit run when a card cue ("card",
  卡号 ...) is near. The rest of a run that held a PAN is masked as ``card_data`` (expiry and
  code said without cue words). A Luhn-invalid 16-digit number is left alone (RELIABILITY P2).
- ``cn_id``: 18 characters (17 digits + digit or X) with a valid GB 11643 check character and
  birth date; with an ID cue (身份证 ...) any 15-18 character run (old 15-digit IDs, and IDs
  the ASR heard with a digit wrong).
- ``phone``: a Chinese mobile number (1[3-9] + 9 digits, optionally +86), a North American
  number grouped 3-3-4, or 7-15 digits after a phone cue.
- ``cvv``: 3-4 digits near a security-code cue; ``expiry``: up to two runs of 2-6 digits after
  an expiry cue; ``account``: 6-30 digits after an account cue (payment context).
- ``email``: written (``a.b@c.com``) or spoken (``john dot lee at example dot com``, 艾特, 点).

A cue counts within `CUE_WINDOW` units before the run (or `CUE_AFTER` after it), across
segment and party boundaries: the agent's "what is the security code?" is the cue for the
customer's "123".
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from monitor.privacy.spoken import WEAK_ZERO, Kind, Unit
from monitor.qa.pinyin import pinyin_keys

__all__ = ["CLASSES", "Entity", "find_entities", "luhn_ok", "cn_id_ok"]

CLASSES = ("pan", "card_data", "cvv", "expiry", "cn_id", "account", "phone", "email")
CUE_WINDOW = 12  # units (a word or a Han character) before a run where a cue counts
CUE_AFTER = 6
PAN_LENGTHS = (16, 15, 19, 18, 17, 14, 13)  # most common first
WEAK_MIN_RUN = 7  # a homophone ("for", "to") counts as a digit only in runs this long

_CUES: dict[str, tuple[str, ...]] = {
    "pan": ("card", "credit", "debit", "visa", "mastercard", "amex", "卡号", "卡號", "信用卡",
            "银行卡", "銀行卡", "借记卡", "借記卡", "储蓄卡"),
    "cvv": ("cvv", "cvc", "cv2", "cvv2", "cid", "security code", "security number",
            "three digit", "three digits", "back of the card", "安全码", "安全碼", "校验码",
            "校驗碼", "背面"),
    "expiry": ("expiry", "expiration", "expires", "expire", "exp", "valid thru",
               "valid through", "valid until", "有效期", "到期", "过期", "過期"),
    "cn_id": ("身份证", "身份證", "证件号", "證件號", "id number", "identity number"),
    "account": ("account", "acct", "count number", "sort code", "routing", "iban", "账号",
                "帳號", "账户", "帳戶", "户号", "戶號"),
    "phone": ("phone", "mobile", "cell", "telephone", "call me", "reach me", "电话", "電話",
              "手机", "手機", "联系方式", "聯繫方式"),
}  # fmt: skip
_TLDS = "com|net|org|edu|gov|cn|io|co|uk|de|info|biz|me"
_EMAIL = re.compile(
    r"[a-z0-9][a-z0-9._%+-]*(?:\s*(?:\bdot\b|点|點)\s*[a-z0-9_-]+)*"
    r"\s*(?:@|\bat\b|艾特)\s*[a-z0-9-]+"
    rf"(?:\s*(?:\.|\bdot\b|点|點)\s*[a-z0-9-]+)*\s*(?:\.|\bdot\b|点|點)\s*(?:{_TLDS})\b",
    re.IGNORECASE,
)
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


@dataclass(frozen=True, slots=True)
class Entity:
    kind: str  # one of CLASSES
    spans: tuple[tuple[int, int, int], ...]  # (segment index, start char, end char)


@dataclass(frozen=True, slots=True)
class _Digit:
    seg: int
    unit: Unit
    offset: int  # which character of unit.value
    anchor: bool  # a pause (gap, joiner, segment start) comes right before this digit


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check of ISO/IEC 7812: every card number passes it."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def cn_id_ok(chars: str) -> bool:
    """GB 11643-1999: 17 digits, a birth date at 7-14, and the ISO 7064 MOD 11-2 check."""
    if len(chars) != 18 or not chars[:17].isdigit():
        return False
    year, month, day = int(chars[6:10]), int(chars[10:12]), int(chars[12:14])
    if not (1900 <= year <= 2099 and 1 <= month <= 12 and 1 <= day <= 31):
        return False
    check = "10X98765432"[sum(int(c) * w for c, w in zip(chars, _ID_WEIGHTS, strict=False)) % 11]
    return chars[17].upper() == check


def _runs(segments: list[list[Unit]], transparent: set[int]) -> list[list[_Digit]]:
    """Digit runs across segments (a WORD ends a run; transparent segments are skipped)."""
    runs: list[list[_Digit]] = []
    cur: list[_Digit] = []
    for s, units in enumerate(segments):
        if s in transparent:
            continue
        first = True
        for unit in units:
            if unit.kind is Kind.WORD:
                if cur:
                    runs.append(cur)
                cur = []
            elif unit.kind is Kind.DIGITS:
                for k in range(len(unit.value)):
                    anchor = k == 0 and (unit.gap or first or not cur)
                    cur.append(_Digit(s, unit, k, anchor))
            if unit.kind is not Kind.JOINER:
                first = False
    if cur:
        runs.append(cur)
    return runs


def _context(segments: list[list[Unit]], run: list[_Digit], before: bool) -> str:
    """The words near a run, lower case: Latin words space-joined, Han characters as is.

    The scan stops at another run of 3 or more digits: a cue belongs to the number right
    after it ("security code 123, expires 12 25": the expiry is not a code).
    """
    limit = CUE_WINDOW if before else CUE_AFTER
    s0, u0 = run[0].seg, run[0].unit
    s1, u1 = run[-1].seg, run[-1].unit
    words: list[str] = []
    digits = 0
    seg_order = range(s0, -1, -1) if before else range(s1, len(segments))
    for s in seg_order:
        units = segments[s]
        if before:
            picked = list(reversed(units[: units.index(u0) if s == s0 else len(units)]))
        else:
            picked = units[units.index(u1) + 1 if s == s1 else 0 :]
        for u in picked:
            if u.kind is Kind.DIGITS:
                digits += len(u.value)
                if digits >= 3:
                    break
            elif u.kind is Kind.WORD:
                digits = 0
                words.append(u.value)
                if len(words) >= limit:
                    break
        else:
            continue
        break
    if before:
        words.reverse()
    out = ""
    for w in words:
        out += w if len(w) == 1 and not w.isascii() else f" {w} "
    return " ".join(out.split())


def _cue_at(kind: str, text: str) -> int:
    """Where the last cue of `kind` in `text` ends (-1: none); larger is nearer the run.
    Chinese cues match by pinyin, so homophones the ASR wrote (身份正 for 身份证) count."""
    padded = f" {text} "
    keys = _cue_keys(padded)  # one key per character: positions are the text's
    best = -1
    for c in _CUES[kind]:
        at = padded.rfind(f" {c} ") if c.isascii() else keys.rfind(_cue_keys(c))
        if at >= 0:
            best = max(best, at + len(c))
    return best


# The cues recur on every segment and stay; each segment's context is new and only passes
# through, so a small cache holds the cues without filling with old contexts.
@functools.lru_cache(maxsize=1024)
def _cue_keys(text: str) -> str:
    """Pinyin keys of a cue or a context (each context is checked for every kind of cue)."""
    return pinyin_keys(text) if not text.isascii() else text


def _cued(kind: str, text: str) -> bool:
    return _cue_at(kind, text) >= 0


def _span_entity(kind: str, digits: list[_Digit]) -> Entity:
    by_seg: dict[int, tuple[int, int]] = {}
    for d in digits:
        u = d.unit
        exact = u.end - u.start == len(u.value)  # "4111" written as digits: split exactly
        start = u.start + d.offset if exact else u.start
        end = u.start + d.offset + 1 if exact else u.end
        lo, hi = by_seg.get(d.seg, (start, end))
        by_seg[d.seg] = (min(lo, start), max(hi, end))
    return Entity(kind, tuple((s, lo, hi) for s, (lo, hi) in sorted(by_seg.items())))


def _windows(run: list[_Digit], cue: bool, classes: frozenset[str]) -> list[tuple[str, int, int]]:
    """PAN and resident-ID windows of a run, as (kind, first digit, end digit)."""
    chars = "".join(d.unit.value[d.offset] for d in run)
    n = len(chars)
    if n < 13:
        return []
    if 13 <= n <= 19 and "pan" in classes and chars.isdigit() and luhn_ok(chars):
        return [("pan", 0, n)]
    if n == 18 and "cn_id" in classes and cn_id_ok(chars):
        return [("cn_id", 0, n)]
    if n <= 19 and not cue:
        return []
    anchors = [i for i, d in enumerate(run) if d.anchor or i == 0]
    ends = set(anchors) | {n}
    found: list[tuple[str, int, int]] = []
    pos = 0
    for a in anchors:
        if a < pos:
            continue
        for length in PAN_LENGTHS:
            piece = chars[a : a + length]
            if a + length in ends and piece.isdigit() and "pan" in classes and luhn_ok(piece):
                found.append(("pan", a, a + length))
                pos = a + length
                break
            if length == 18 and a + 18 in ends and "cn_id" in classes and cn_id_ok(piece):
                found.append(("cn_id", a, a + 18))
                pos = a + 18
                break
    return found


def _classify(
    segments: list[list[Unit]], run: list[_Digit], classes: frozenset[str], carry: str
) -> tuple[list[Entity], str]:
    """`_classify_run`; a homophone at either end ("for 4111 ...") is first taken for the
    word it is, and for a digit only when that makes a long number ("for 532-0151-1283-0366"
    said for 4532...): short runs with it would turn "on hold for 40 minutes" into a code."""
    lo = 1 if run and run[0].unit.weak else 0
    hi = len(run) - 1 if len(run) > 1 and run[-1].unit.weak else len(run)
    if lo == 0 and hi == len(run):
        return _classify_run(segments, run, classes, carry)
    found, nxt = _classify_run(segments, run[lo:hi], classes, carry) if lo < hi else ([], "")
    if found or len(run) < WEAK_MIN_RUN:
        return found, nxt
    return _classify_run(segments, run, classes, carry)


def _classify_run(
    segments: list[list[Unit]], run: list[_Digit], classes: frozenset[str], carry: str
) -> tuple[list[Entity], str]:
    """The entities of one run, and the cue context to carry to the next run (after a PAN, the
    question "card number and security code?" still cues the code said after it)."""
    before = f"{carry} {_context(segments, run, before=True)}".strip()
    after = _context(segments, run, before=False)
    near = f"{before} {after}"
    chars = "".join(d.unit.value[d.offset] for d in run)
    n = len(chars)
    windows = _windows(run, _cued("pan", near) or _cued("cn_id", near), classes)
    if windows:
        out = [_span_entity(kind, run[a:b]) for kind, a, b in windows]
        covered = {i for _, a, b in windows for i in range(a, b)}
        rest = [d for i, d in enumerate(run) if i not in covered]
        pan = any(k == "pan" for k, _, _ in windows)
        if rest and "card_data" in classes and pan:
            out.append(_span_entity("card_data", rest))
        return out, before if pan else ""
    kind: str | None = None
    if "cn_id" in classes and 15 <= n <= 18 and _cued("cn_id", near):
        kind = "cn_id"
    elif "phone" in classes and _is_phone(chars, run, before):
        kind = "phone"
    elif "cvv" in classes and n in (3, 4) and _cue_at("cvv", before) > _cue_at("expiry", before):
        kind = "cvv"  # the nearer cue wins: "security code 123, expires 12 25"
    elif "expiry" in classes and 2 <= n <= 6 and _cued("expiry", before):
        kind = "expiry"
    elif "cvv" in classes and n in (3, 4) and _cued("cvv", after):
        kind = "cvv"
    elif "account" in classes and 6 <= n <= 30 and _cued("account", before):
        kind = "account"
    return ([_span_entity(kind, run)] if kind else []), ""


def _is_phone(chars: str, run: list[_Digit], before: str) -> bool:
    if not chars.isdigit():
        return False
    n = len(chars)
    body = chars[2:] if n == 13 and chars.startswith("86") else chars
    if len(body) == 11 and body[0] == "1" and body[1] in "3456789":
        return True  # a Chinese mobile number
    groups = [sum(1 for _ in g) for g in _groups(run)]
    if groups in ([3, 3, 4], [1, 3, 3, 4]) and chars[-10] in "23456789":
        return True  # North American, grouped as people say it
    return 7 <= n <= 15 and _cued("phone", before)


def _groups(run: list[_Digit]) -> list[list[_Digit]]:
    out: list[list[_Digit]] = []
    for d in run:
        if d.anchor or not out:
            out.append([])
        out[-1].append(d)
    return out


def _weak_zero_heads(segments: list[list[Unit]], transparent: set[int]) -> list[list[Unit]]:
    """A segment that starts with "oh" right after one that ended in digits goes on with a
    zero ("... five three" / "oh, and ..."): `read_units` sees one segment, so it cannot."""
    out = [list(units) for units in segments]
    tail = False
    for s, units in enumerate(out):
        if s in transparent:
            continue
        solid = [k for k, u in enumerate(units) if u.kind is not Kind.JOINER]
        if solid and tail and units[solid[0]].value in WEAK_ZERO:
            u = units[solid[0]]
            units[solid[0]] = Unit(Kind.DIGITS, "0", u.start, u.end, True)
        tail = bool(solid) and units[solid[-1]].kind is Kind.DIGITS
    return out


def find_entities(
    segments: list[list[Unit]],
    texts: list[str],
    classes: frozenset[str],
    transparent: set[int] | None = None,
) -> list[Entity]:
    """Entities in consecutive segments (`segments[i]` = `read_units(texts[i])`).

    `transparent` segments (short backchannels of the other party, "okay", 嗯) neither end a
    digit run nor hold one.
    """
    transparent = transparent or set()
    segments = _weak_zero_heads(segments, transparent)
    found: list[Entity] = []
    carry = ""
    for run in _runs(segments, transparent):
        entities, carry = _classify(segments, run, classes, carry)
        found.extend(entities)
    if "email" in classes:
        for s, text in enumerate(texts):
            for m in _EMAIL.finditer(text):
                found.append(Entity("email", ((s, m.start(), m.end()),)))
    return found
