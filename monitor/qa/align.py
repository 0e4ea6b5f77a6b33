"""Sound-aware weighted alignment of a phrase in a transcript: the last line of defence
against heavy ASR damage (15-20 % CER) once the plain fuzzy aligners (`textmatch`) fail.

This module owns `weighted_search(phrase, text, start, budget)`: the semi-global edit
alignment (the whole phrase against any stretch of the text) of least *weighted* cost, where
the errors ASR makes cost less than real differences:

* Mandarin (on characters): a homophone (same merged toneless syllable: 核实/和时) costs 0, a
  near-homophone (same initial, syllables one letter apart: 稍/收, 信/系) 0.5, a modal
  particle or 的/了 the ASR inserted (啊, 呢, 吧 ...) 0.5, anything else 1.
* English (on letters, spaces removed, so "thankyou" = "thank you" and "call in" = "calling"):
  the light words ASR inserts and drops (a, the, and, so, yeah, oh, well) are removed from both
  sides before aligning; every letter edit costs 1.

The caller gives the cost `budget` a hit may spend (`tolerance` x the phrase's size) and
checks the hit as it does any other (negation, content words). Only a stretch that
rapidfuzz already found roughly similar is aligned here, so the Python DP stays cheap.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from monitor.qa.pinyin import initials, is_cjk, keys_to_letters

#: Particles and hesitations Whisper inserts into Mandarin and that carry no content.
ZH_PARTICLES = frozenset("了的啊呢吧嗯哦呀哈呃么")
#: English words ASR inserts or drops freely (articles, fillers, "and"/"so" starts).
EN_LIGHT_WORDS = frozenset({"a", "an", "the", "and", "so", "yeah", "oh", "well", "okay"})
#: A stretch is aligned only when rapidfuzz scores it at least this (0..100).
PREFILTER_MIN = 50.0


@dataclass(frozen=True, slots=True)
class Sequence:
    """What is aligned: symbols, per symbol a sound key and its initial, and where each
    symbol sits in the normalised text."""

    symbols: str
    keys: str
    inits: tuple[str, ...]
    index: tuple[int, ...]


@functools.lru_cache(maxsize=4096)
def sequence(text: str, keys: str) -> Sequence:
    """The alignable form of a normalised text (and its pinyin keys, same length)."""
    if any(is_cjk(c) for c in text):
        return Sequence(text, keys, initials(keys), tuple(range(len(text))))
    symbols: list[str] = []
    index: list[int] = []
    pos = 0
    for word in text.split(" "):
        if word and word not in EN_LIGHT_WORDS:
            symbols.extend(word)
            index.extend(range(pos, pos + len(word)))
        pos += len(word) + 1
    joined = "".join(symbols)
    return Sequence(joined, joined, tuple(joined), tuple(index))


@functools.lru_cache(maxsize=1024)
def _near(key_a: str, key_b: str) -> bool:
    """Syllables with the same initial, one letter apart (稍 shao / 收 shou)."""
    a, b = keys_to_letters(key_a)[0], keys_to_letters(key_b)[0]
    return Levenshtein.distance(a, b) <= 1


def _sub(p: Sequence, i: int, t: Sequence, j: int) -> float:
    if p.symbols[i] == t.symbols[j] or p.keys[i] == t.keys[j]:
        return 0.0
    if p.inits[i] and p.inits[i] == t.inits[j] and is_cjk(t.symbols[j]) and \
            _near(p.keys[i], t.keys[j]):
        return 0.5
    return 1.0


def _ins(t: Sequence, j: int) -> float:
    return 0.5 if t.symbols[j] in ZH_PARTICLES else 1.0


def _dp(p: Sequence, t: Sequence, lo: int, hi: int) -> tuple[float, int, int, int]:
    """Least-cost alignment of all of `p` against some t[x:y] with lo <= x <= y <= hi:
    (cost, hard edits (those costing 1), x, y). Ties go to fewer hard edits."""
    m = len(p.symbols)
    width = hi - lo + 1
    prev = [0.0] * width  # row 0: a hit may start anywhere
    prev_hard = [0] * width
    start = list(range(lo, hi + 1))
    for i in range(1, m + 1):
        cur = [prev[0] + 1.0] + [0.0] * (width - 1)
        cur_hard = [prev_hard[0] + 1] + [0] * (width - 1)
        cur_start = [lo] + [0] * (width - 1)
        for k in range(1, width):
            j = lo + k - 1
            sub = _sub(p, i - 1, t, j)
            ins = _ins(t, j)
            options = (
                (prev[k - 1] + sub, prev_hard[k - 1] + (sub == 1.0), start[k - 1]),
                (prev[k] + 1.0, prev_hard[k] + 1, start[k]),  # a symbol the ASR dropped
                (cur[k - 1] + ins, cur_hard[k - 1] + (ins == 1.0), cur_start[k - 1]),
            )
            cur[k], cur_hard[k], cur_start[k] = min(options, key=lambda o: (o[0], o[1]))
        prev, prev_hard, start = cur, cur_hard, cur_start
    best = min(range(width), key=lambda k: (prev[k], prev_hard[k], -k))
    return prev[best], prev_hard[best], start[best], lo + best


def weighted_search(phrase: Sequence, text: Sequence, start: int, budget: float,
                    max_hard: int) -> tuple[int, int, float] | None:
    """The cheapest alignment of `phrase` in `text` at or after normalised position `start`,
    if it costs at most `budget` with at most `max_hard` full-cost edits (the rest of the
    budget only buys homophones, near-homophones and particles): (start, end) in the
    normalised text and the cost."""
    m = len(phrase.symbols)
    first = next((n for n, i in enumerate(text.index) if i >= start), len(text.index))
    region = text.keys[first:]
    if m == 0 or not region:
        return None
    if len(region) <= m:
        lo, hi = first, len(text.symbols)
    else:
        found = fuzz.partial_ratio_alignment(phrase.keys, region, score_cutoff=PREFILTER_MIN)
        if found is None:
            return None
        slack = int(budget) + 2
        lo = max(first, first + found.dest_start - slack)
        hi = min(len(text.symbols), first + found.dest_end + slack)
    cost, hard, x, y = _dp(phrase, text, lo, hi)
    if cost > budget or hard > max_hard or y <= x:
        return None
    return text.index[x], text.index[y - 1] + 1, cost


def confusable_cap(phrase: Sequence, others: list[Sequence]) -> float:
    """The most a hit of `phrase` may cost so that none of `others` (the phrases of the
    script's other rules), said word for word, is taken for it: "帮您核对一下" (verification)
    is one character from "跟您核对一下" (confirmation). Infinite when nothing is close."""
    cap = float("inf")
    for other in others:
        if not other.symbols or not phrase.symbols:
            continue
        if fuzz.partial_ratio(phrase.keys, other.keys) < PREFILTER_MIN:
            continue
        cost = _dp(phrase, other, 0, len(other.symbols))[0]
        cap = min(cap, cost - 0.5)
    return cap
