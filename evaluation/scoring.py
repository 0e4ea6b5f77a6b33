"""Accuracy scoring: word error rate for English, character error rate for Mandarin.

This module owns how a transcript is compared with a reference, for the tests and the
benchmark (never on the live path):

* `wer(ref, hyp)` / `corpus_wer(refs, hyps)` - English: lower case, punctuation dropped,
  hyphens split ("forty-two" = "forty two"), apostrophes removed ("I'm" = "im"), digits
  spelled out ("press 1" = "press one", "1.5" = "one point five").
* `cer(ref, hyp)` / `corpus_cer(refs, hyps)` - Mandarin: full-width to half-width (NFKC),
  Traditional to Simplified, Arabic digits to Chinese numerals the way AISHELL labels write
  them (2015年 -> 二零一五年, 20 -> 二十; via `cn2an`), then punctuation and whitespace
  dropped, one character per token. A number of one to three digits before 年 is either a
  year ("10年" = 一零年, 2010) or a count of years ("10年" = 十年): the hypothesis is
  scored in the reading closer to the reference, since both are written the same in digits.

A corpus rate is total edits over total reference tokens (not a mean of per-clip rates), as
speech-recognition papers report it. Rates can exceed 1 when the hypothesis has many
insertions.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence

import cn2an

from asr.textnorm import ONES as _ONES
from asr.textnorm import number_words, to_simplified

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_DIGIT_RANGE = re.compile(r"(?<=\d)\s*[-–~]\s*(?=\d)")
_SHORT_YEARS = re.compile(r"(?<![\d.])\d{1,3}(?=\s*年)")


def _spell(match: re.Match[str]) -> str:
    whole, _, frac = match.group(0).partition(".")
    words = number_words(int(whole))
    if frac:
        words += " point " + " ".join(_ONES[int(d)] for d in frac)
    return f" {words} "


def normalize_en(text: str) -> list[str]:
    """English text to the word tokens that WER counts."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = text.replace(",", "")  # thousands separators: "1,000" -> "1000" (commas go anyway)
    text = _NUMBER.sub(_spell, text)
    text = re.sub(r"['’`]", "", text)
    text = re.sub(r"[^\w\s]|_", " ", text)
    return text.split()


def normalize_zh(text: str) -> list[str]:
    """Mandarin text to the character tokens that CER counts."""
    text = to_simplified(unicodedata.normalize("NFKC", text)).lower()
    # "1-2线" is "一二线" in AISHELL labels, not cn2an's "一负二线" (minus two).
    text = _DIGIT_RANGE.sub(" ", text)
    if any(ch.isdigit() for ch in text):
        text = str(cn2an.transform(text, "an2cn"))
    return [ch for ch in text if ch.isalnum()]


def zh_readings(text: str) -> list[list[str]]:
    """`normalize_zh(text)`, and when a short number precedes 年, also the reading of those
    numbers as a count (十年) rather than digit by digit (一零年)."""
    readings = [normalize_zh(text)]
    if _SHORT_YEARS.search(unicodedata.normalize("NFKC", text)):
        counted = _SHORT_YEARS.sub(
            lambda m: str(cn2an.an2cn(m.group(0))), unicodedata.normalize("NFKC", text)
        )
        readings.append(normalize_zh(counted))
    return readings


def _zh_edits(ref: str, hyp: str) -> tuple[int, int]:
    r = normalize_zh(ref)
    return min(edit_distance(r, h) for h in zh_readings(hyp)), len(r)


def edit_distance(ref: Sequence[str], hyp: Sequence[str]) -> int:
    """Levenshtein distance (substitutions, insertions, deletions all cost 1)."""
    if len(ref) < len(hyp):
        ref, hyp = hyp, ref
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        current = [i]
        for j, h in enumerate(hyp, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]


def _rate(edits: int, ref_tokens: int) -> float:
    if ref_tokens == 0:
        return 0.0 if edits == 0 else float("inf")
    return edits / ref_tokens


def wer(ref: str, hyp: str) -> float:
    """English word error rate of `hyp` against `ref`."""
    r, h = normalize_en(ref), normalize_en(hyp)
    return _rate(edit_distance(r, h), len(r))


def cer(ref: str, hyp: str) -> float:
    """Mandarin character error rate of `hyp` against `ref`."""
    return _rate(*_zh_edits(ref, hyp))


def corpus_wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Total word edits over total reference words."""
    return _corpus(refs, hyps, normalize_en)


def corpus_cer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Total character edits over total reference characters."""
    if len(refs) != len(hyps):
        raise ValueError(
            f"refs and hyps must have the same length, got {len(refs)} and {len(hyps)}"
        )
    pairs = [_zh_edits(ref, hyp) for ref, hyp in zip(refs, hyps, strict=True)]
    return _rate(sum(e for e, _ in pairs), sum(n for _, n in pairs))


def _corpus(refs: Sequence[str], hyps: Sequence[str], norm: Callable[[str], list[str]]) -> float:
    if len(refs) != len(hyps):
        raise ValueError(
            f"refs and hyps must have the same length, got {len(refs)} and {len(hyps)}"
        )
    edits = total = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        r = norm(ref)
        edits += edit_distance(r, norm(hyp))
        total += len(r)
    return _rate(edits, total)
