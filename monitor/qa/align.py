"""Sound-aware weighted alignment of a phrase in a transcript: the last line of defence
against heavy ASR damage (15-20 % CER) once the plain fuzzy aligners (`textmatch`) fail.

This module owns `weighted_search(phrase, text, start, budget)`: the semi-global edit
alignment (the whole phrase against any stretch of the text) of least *weighted* cost, where
the errors ASR makes cost less than real differences:

* Mandarin (on characters): a homophone (same merged toneless syllable: 核实/和时) costs 0, a
  near-homophone (same initial, syllables one letter apart: 您/你, 信/系) 0.5, a modal
  particle or 的/了 the ASR inserted (啊, 呢, 吧 ...) 0.5, anything else 1.
* English (on letters, spaces removed, so "thankyou" = "thank you" and "call in" = "calling"):
  the light words ASR inserts and drops (a, the, and, so, yeah, oh, well) are removed from both
  sides before aligning; every letter edit costs 1 (plain Levenshtein, in rapidfuzz).

The caller gives the cost `budget` a hit may spend (`tolerance` x the phrase's size) and
checks the hit as it does any other (negation, content words). Only a stretch that
rapidfuzz already found roughly similar is aligned here, so the Python DP stays cheap.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

from rapidfuzz import fuzz
from rapidfuzz.distance import Levenshtein

from monitor.qa.pinyin import initials, is_cjk, keys_to_letters

#: Particles and hesitations Whisper inserts into Mandarin and that carry no content.
ZH_PARTICLES = frozenset("了的啊呢吧嗯哦呀哈呃么那就这")
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


# Small on purpose: what repeats is one turn's text against every rule of a segment's check,
# moments apart; transcript texts rarely recur across calls, and an entry holds two tuples as
# long as its turn, so 4,096 of them kept a few MB warm per process (the L4 soak's slope).
@functools.lru_cache(maxsize=256)
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
    """Syllables one letter apart (信 xin / 系 xi); the caller checks the initial."""
    a, b = keys_to_letters(key_a)[0], keys_to_letters(key_b)[0]
    return Levenshtein.distance(a, b) <= 1


def _sub(p: Sequence, i: int, t: Sequence, j: int) -> float:
    if p.symbols[i] == t.symbols[j] or p.keys[i] == t.keys[j]:
        return 0.0
    if (
        p.inits[i]
        and p.inits[i] == t.inits[j]
        and is_cjk(t.symbols[j])
        and _near(p.keys[i], t.keys[j])
    ):
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
            # min over (cost, hard edits): diagonal, a dropped phrase symbol, an inserted one
            cost, hard, origin = prev[k - 1] + sub, prev_hard[k - 1] + (sub == 1.0), start[k - 1]
            up, up_hard = prev[k] + 1.0, prev_hard[k] + 1
            if up < cost or (up == cost and up_hard < hard):
                cost, hard, origin = up, up_hard, start[k]
            left, left_hard = cur[k - 1] + ins, cur_hard[k - 1] + (ins == 1.0)
            if left < cost or (left == cost and left_hard < hard):
                cost, hard, origin = left, left_hard, cur_start[k - 1]
            cur[k], cur_hard[k], cur_start[k] = cost, hard, origin
        prev, prev_hard, start = cur, cur_hard, cur_start
    best = min(range(width), key=lambda k: (prev[k], prev_hard[k], -k))
    return prev[best], prev_hard[best], start[best], lo + best


def _latin(needle: str, hay: str, lo: int, hi: int, limit: float) -> tuple[float, int, int]:
    """Plain semi-global Levenshtein of `needle` in hay[lo:hi]: (cost, x, y), by trying the
    spans whose length is within `limit` of the needle's."""
    m, best = len(needle), (float("inf"), 0, 0)
    cutoff = int(limit)
    for x in range(lo, hi):
        for y in range(max(x + 1, x + m - cutoff), min(hi, x + m + cutoff) + 1):
            d = Levenshtein.distance(needle, hay[x:y], score_cutoff=cutoff)
            if d <= cutoff and (d, x, -y) < (best[0], best[1], -best[2]):
                best = (float(d), x, y)
    return best


def weighted_search(
    phrase: Sequence, text: Sequence, start: int, budget: float, max_hard: int
) -> tuple[int, int, float] | None:
    """The cheapest alignment of `phrase` in `text` at or after normalised position `start`,
    if it costs at most `budget` with at most `max_hard` full-cost edits (the rest of the
    budget only buys homophones, near-homophones and particles): (start, end) in the
    normalised text and the cost."""
    m = len(phrase.symbols)
    first = bisect.bisect_left(text.index, start)
    region = text.keys[first:]
    if m == 0 or not region:
        return None
    if len(region) <= m:
        lo, hi = first, len(text.symbols)
    else:
        # An alignment within budget edits at most `2 * budget` symbols (Mandarin: half-cost
        # edits count once each here; English has none), so rapidfuzz cannot score it much
        # below this: a cheap filter that leaves the Python DP to a few real candidates.
        cutoff = max(PREFILTER_MIN, 100.0 * (1.0 - _soft(phrase) * budget / m) - 5.0)
        found = fuzz.partial_ratio_alignment(phrase.keys, region, score_cutoff=cutoff)
        if found is None:
            return None
        slack = int(budget) + 2
        lo = max(first, first + found.dest_start - slack)
        hi = min(len(text.symbols), first + found.dest_end + slack)
    if _soft(phrase) == 1.0:  # English: every edit costs 1, rapidfuzz does it in C
        cost, x, y = _latin(phrase.symbols, text.symbols, lo, hi, min(budget, max_hard))
        if cost > budget:
            return None
        hard = int(cost)
    else:
        cost, hard, x, y = _dp(phrase, text, lo, hi)
    if cost > budget or hard > max_hard or y <= x:
        return None
    return text.index[x], text.index[y - 1] + 1, cost


def confusable_cap(phrase: Sequence, budget: float, others: list[Sequence]) -> float:
    """The most a hit of `phrase` may cost (at most `budget`) so that none of `others` (the
    phrases of the script's other rules), said word for word, is taken for it: "跟您确认"
    must not fire on another rule's "帮您确认"."""
    cap = budget
    m = len(phrase.symbols)
    if m == 0:
        return cap
    cutoff = max(PREFILTER_MIN, 100.0 * (1.0 - _soft(phrase) * (budget + 0.5) / m) - 5.0)
    for other in others:
        if not other.symbols:
            continue
        if fuzz.partial_ratio(phrase.keys, other.keys, score_cutoff=cutoff) == 0:
            continue  # too far apart to ever be confused within the budget
        cost = _dp(phrase, other, 0, len(other.symbols))[0]
        cap = min(cap, cost - 0.5)
    return cap


def _soft(phrase: Sequence) -> float:
    """How many symbols one unit of cost can edit: 2 in Mandarin (half-cost edits), 1 else."""
    return 2.0 if phrase.symbols and is_cjk(phrase.symbols[0]) else 1.0
