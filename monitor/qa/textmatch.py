"""Phrase matching that survives ASR errors: pinyin keys and fuzzy alignment of one phrase.

This module owns how a script phrase is compared with transcript text:

* `normalize(text)` -> `NormalizedText` (`monitor.qa.normalize`, re-exported here): the
  matching form of a text, each character mapped back to the transcript.
* Pinyin forms (`monitor.qa.pinyin`): per character a syllable key and the syllable's
  letters, so homophones ("核实" heard as "和时") compare equal and near-homophones ("稍"
  heard as "收") nearly so.
* `CompiledPhrase.search(text, lo, relax)`: the best fuzzy alignment of one phrase in a text
  (rapidfuzz `partial_ratio_alignment`) on characters, on pinyin keys and on pinyin letters
  (same initials only). A hit must reach the phrase's threshold: `floor(size * tolerance)`
  substituted characters are forgiven, and phrases under 5 characters must match exactly
  (Chinese: or as homophones, or one pinyin letter off). Latin hits are snapped to whole
  words, one word more or less at either end, and every content word (4+ letters) needs a
  counterpart, so "here" never matches inside "there" nor "thank you for holding" on "thank
  you for calling". Negation must agree: a hit needs as many negations (not, can't, 不, 没,
  别) as its phrase, and none just before it ("不要把密码告诉任何人" is no "把密码告诉我").
  Filler words (uh, um) are dropped in normalisation.
* When none of those aligners finds the phrase, `monitor.qa.align` tries a weighted
  alignment (homophones free, near-homophones and particles half an edit; English letters
  without spaces and light words), within a budget capped below other rules' phrases.

This is the precise, lexical layer of compliance: excellent on the wordings a script lists,
blind to the ones it does not. Those are the intents' (`monitor.qa.intents`: matched by
meaning with a sentence encoder); a stage is heard when either layer hears it.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from rapidfuzz import fuzz

from monitor.qa.align import EN_LIGHT_WORDS, Sequence, sequence, weighted_search
from monitor.qa.normalize import BREAKS, NormalizedText, normalize
from monitor.qa.pinyin import initials, is_cjk

__all__ = [
    "BREAKS",
    "Alignment",
    "CompiledPhrase",
    "NormalizedText",
    "count_negations",
    "has_word",
    "normalize",
]

_ANCHOR = re.compile(r"\[([^\[\]]+)\]")


@dataclass(frozen=True, slots=True)
class Alignment:
    """Where a phrase was found in a normalised text: [start, end) and score 0..100."""

    start: int
    end: int
    score: float
    by_pinyin: bool
    margin: float = 0.0  # score minus the threshold it had to reach (negative when relaxed)


#: Phrases shorter than this (letters or characters, spaces aside) must match exactly (or,
#: in Chinese, as homophones): one letter off "here" is "there".
MIN_FUZZY_SIZE = 5


def _threshold(size: int, tolerance: float, min_score: float) -> float:
    """Score a hit needs: `floor(size * tolerance)` substituted symbols are forgiven."""
    if size < MIN_FUZZY_SIZE:
        return 100.0
    return max(min_score, 100.0 * (1.0 - int(size * tolerance) / size))


@dataclass(frozen=True, slots=True)
class CompiledPhrase:
    """One phrase variant, normalised once when the script is loaded."""

    phrase: str  # as written in the script (after synonym expansion)
    norm: str
    keys: str
    letters: str
    initials: tuple[str, ...]  # per character: its pinyin initial (the character if not CJK)
    threshold: float  # for characters and pinyin syllables
    letter_threshold: float  # for pinyin letters (near-homophones: 稍/收, 祝/只)
    latin: bool  # has Latin letters: hits are snapped to whole words and checked per word
    cjk: bool
    words: tuple[str, ...]  # Latin words of 4+ letters: each needs a counterpart in a hit
    negations: int  # negation words/characters: a hit must have exactly as many
    seq: Sequence  # for the sound-aware weighted alignment (`monitor.qa.align`)
    budget: float  # weighted edit cost a hit may spend there
    #: Parts written `[...]` in the script: a hit must contain at least one of them (Chinese:
    #: as characters or homophones; English: a word `has_word` accepts). They are what
    #: tells a phrase from a confusable one ("请问[还]有什么可以帮您" is not the greeting's
    #: "请问有什么可以帮您"), so the rest may be matched loosely.
    anchors: tuple[NormalizedText, ...] = ()

    @classmethod
    def build(cls, phrase: str, tolerance: float, min_score: float) -> CompiledPhrase:
        anchors = tuple(normalize(a) for a in _ANCHOR.findall(phrase))
        if any(not a.text for a in anchors):
            raise ValueError(f"phrase {phrase!r} has an empty [anchor]")
        n = normalize(phrase.replace("[", "").replace("]", ""))
        if not n.text:
            raise ValueError(f"phrase {phrase!r} has no letters or digits")
        size = len(n.text.replace(" ", ""))
        latin = any(c.isascii() and c.isalpha() for c in n.text)
        words = tuple(w for w in n.text.split() if len(w) >= 4 and w.isascii())
        return cls(
            phrase=phrase,
            norm=n.text,
            keys=n.keys,
            letters=n.letters,
            initials=initials(n.keys),
            threshold=_threshold(size, tolerance, min_score),
            # One misheard letter per forgiven character, and at least one: near-homophones
            # (稍/收, 祝/只) but never a dropped syllable. Measured on the evaluation calls,
            # this keeps short elements (祝您, 再见) alive at 5-10 % CER without a single false
            # hit among the near misses.
            letter_threshold=100.0 * (1.0 - max(1, int(size * tolerance)) / max(1, len(n.letters))),
            latin=latin,
            cjk=any(is_cjk(c) for c in n.text),
            words=words,
            negations=count_negations(n.text),
            seq=(seq := sequence(n.text, n.keys)),
            budget=weighted_budget(len(seq.symbols), tolerance, cjk=any(is_cjk(c) for c in n.text)),
            anchors=anchors,
        )

    def search(self, text: NormalizedText, lo: int = 0, relax: float = 0.0) -> Alignment | None:
        """Best alignment in `text` ending after position `lo` whose score reaches the
        threshold less `relax` (the caller then weighs the `margin`)."""
        hay = text.text
        if len(hay) - lo <= 0:
            return None
        # Only the part that can hold a hit ending past `lo` is searched.
        start = max(0, lo - len(self.norm) - 4)
        if len(self.letters.replace(" ", "")) < MIN_RELAX_LETTERS:
            relax = 0.0  # "祝您", "bye": too short to tell a damaged hit from a stray one
        floor = self.threshold - relax
        candidates: list[tuple[int, int, float, float, bool]] = []
        # Snapping to words moves a Latin score by a few points at most: a raw score this far
        # below the threshold cannot become a hit, and rapidfuzz stops early.
        found = _align(self.norm, hay, start, floor - (15 if self.latin else 0))
        if found is not None:
            x, y, score = self._snap_words(hay, *found[:2], floor) if self.latin else found
            candidates.append((x, y, score, self.threshold, False))
        if self.cjk:
            found = _align(self.keys, text.keys, start, floor)
            if found is not None:
                candidates.append((*found, self.threshold, True))
            found = self._align_letters(text, start, self.letter_threshold - relax)
            if found is not None:
                candidates.append((*found, self.letter_threshold, True))
        if not any(c[2] >= c[3] - relax for c in candidates):
            # Only when the plain aligners found nothing: heavy damage (15-20 % CER).
            weighted = self._align_weighted(text, start, relax)
            if weighted is not None:
                candidates.append(weighted)
        best: Alignment | None = None
        for x, y, score, threshold, by_pinyin in candidates:
            if y <= lo or score < threshold - relax:
                continue
            if count_negations(hay[x:y]) != self.negations or (
                not self.negations and count_negations(_before(hay, x)) > 0
            ):
                # "I can't help you with that" is no "I can help you with that", and
                # "不要把密码告诉任何人" is no "把密码告诉我".
                continue
            if not self._anchored(text, x, y):
                continue
            if self.cjk and self.threshold >= 100.0 and _spans_a_break(text, x, y):
                continue  # "谢您" is not "…一下，您…": a short phrase is said in one breath
            if best is None or score - threshold > best.margin:
                best = Alignment(x, y, score, by_pinyin, score - threshold)
        return best

    def _anchored(self, text: NormalizedText, x: int, y: int) -> bool:
        """Whether the span [x, y) holds one of the phrase's `[anchors]` (if it has any)."""
        return not self.anchors or any(_holds(a, text, x, y) for a in self.anchors)

    def _align_weighted(
        self, text: NormalizedText, start: int, relax: float
    ) -> tuple[int, int, float, float, bool] | None:
        """The sound-aware weighted alignment (`monitor.qa.align`), scored like the others:
        100 less the share of the phrase's size its cost spends; the threshold is what the
        budget allows. Short phrases keep their exactness rule; Latin hits must cover whole
        words and the phrase's content words."""
        size = len(self.seq.symbols)
        if size < MIN_FUZZY_SIZE and not self.cjk:
            return None
        budget = self.budget + relax * size / 100.0
        max_hard = int(
            self.budget - (SOFT_SLACK if self.cjk else 0.0) + relax * size / 100.0 + HARD_ROUNDING
        )
        found = weighted_search(self.seq, sequence(text.text, text.keys), start, budget, max_hard)
        if found is None:
            return None
        x, y, cost = found
        if self.latin:
            hay = text.text
            if (x > 0 and hay[x - 1] != " ") or (y < len(hay) and hay[y] != " "):
                a, b = x, y
                while x > 0 and hay[x - 1] != " ":
                    x -= 1
                while y < len(hay) and hay[y] != " ":
                    y += 1
                # A short phrase may sit inside a longer word only when the rest of it is a
                # light word the ASR ran into it ("andgoodbye"), not part of another word
                # ("speaking" is no "bye").
                if size < MIN_RELAX_LETTERS and not (hay[x:a] in _GLUE and hay[b:y] in _GLUE):
                    return None
            # Letters are cheap to confuse ("let me" / "please", "holding" / "calling"): here
            # every content word needs a counterpart and so do most short words (one of two to four
            # may be lost, two of five to seven).
            span = hay[x:y]
            short = [w for w in self.norm.split() if 2 <= len(w) < 4 and w not in EN_LIGHT_WORDS]
            if not all(has_word(w, span) for w in self.words):
                return None
            lost = sum(1 for w in short if not has_word(w, span))
            if lost > (len(short) + 1) // 3:  # one of two, one of three, two of five ...
                return None
        threshold = 100.0 * (1.0 - self.budget / size)
        return x, y, 100.0 * (1.0 - cost / size), threshold, self.cjk

    def _align_letters(
        self, text: NormalizedText, start: int, floor: float
    ) -> tuple[int, int, float] | None:
        """Align on pinyin letters, then re-score the phrase-long character spans around the
        alignment whose syllables start with the phrase's initials."""
        letter_start = bisect.bisect_left(text.letter_char, start)
        found = _align(self.letters, text.letters, letter_start, floor - 10)
        if found is None:
            return None
        la, lb, _ = found
        a, b = text.letter_char[la], text.letter_char[lb - 1] + 1
        best = (a, b, -1.0)
        size = len(self.keys)
        for x in (a - 1, a, a + 1):
            y = x + size
            # Same number of syllables with the same initials: small models mishear finals
            # (稍/收 shao/shou, 祝/只 zhu/zhi), far less the initial (祝/区 zhu/qu).
            if x < 0 or y > len(text.text) or initials(text.keys[x:y]) != self.initials:
                continue
            lx = bisect.bisect_left(text.letter_char, x)
            ly = bisect.bisect_left(text.letter_char, y)
            score = float(fuzz.ratio(self.letters, text.letters[lx:ly]))
            if score > best[2]:
                best = (x, y, score)
        return best if best[2] >= 0 else None

    def _snap_words(self, hay: str, a: int, b: int, floor: float) -> tuple[int, int, float]:
        """Widen [a, b) to whole words, then keep the best-scoring span of one word more or
        less at either end whose words cover the phrase's content words (one in three may be
        misheard beyond recognition)."""
        while a > 0 and hay[a - 1] != " ":
            a -= 1
        while b < len(hay) and hay[b] != " ":
            b += 1
        starts = [a]
        ends = [b]
        if a > 0:
            starts.append(hay.rfind(" ", 0, a - 1) + 1)
        inner_first = hay.find(" ", a, b)
        if inner_first > 0:
            starts.append(inner_first + 1)
            ends.append(hay.rfind(" ", a, b))
        if b < len(hay):
            right = hay.find(" ", b + 1)
            ends.append(len(hay) if right < 0 else right)
        best = (a, b, -1.0)
        allowed = max(0, len(self.words) - 1) // 3
        for x in starts:
            for y in ends:
                if y <= x:
                    continue
                span = hay[x:y]
                score = float(fuzz.ratio(self.norm, span))
                if score <= best[2] or score < floor:
                    continue
                # partial_ratio, so that a word the ASR merged ("helpyou") still counts.
                lost = sum(1 for w in self.words if not has_word(w, span))
                if lost <= allowed:
                    best = (x, y, score)
        return best


#: Mandarin: half an edit more than `tolerance` allows, which only homophone-like errors (a
#: near-homophone, an inserted particle) can spend: see `monitor.qa.align`.
SOFT_SLACK = 0.5
#: Full-cost edits a weighted hit may make: `int(size * tolerance + HARD_ROUNDING)`.
HARD_ROUNDING = 0.25


def weighted_budget(size: int, tolerance: float, *, cjk: bool) -> float:
    """Weighted edit cost a phrase of `size` symbols may spend (`monitor.qa.align`)."""
    return size * tolerance + (SOFT_SLACK if cjk else 0.0)


#: What may be glued to a short Latin hit inside one ASR word: nothing, or a light word.
_GLUE = EN_LIGHT_WORDS | {""}
#: Phrases shorter than this (in letters, pinyin for Chinese) are never relaxed.
MIN_RELAX_LETTERS = 8
#: A phrase word has a counterpart in a hit when they are this similar ("acme"/"acne" = 75,
#: "holding"/"calling" = 71).
WORD_MIN_RATIO = 75.0
_NEGATION_WORDS = frozenset(
    "not no never nothing nobody cant cannot dont doesnt didnt wont wouldnt couldnt shouldnt "
    "isnt arent wasnt werent havent hasnt hadnt aint".split()
)
_NEGATION_CHARS = frozenset("不没别")


def count_negations(text: str) -> int:
    """Negation words (English) and characters (Chinese) in normalised text."""
    words = sum(1 for w in text.split() if w in _NEGATION_WORDS)
    return words + sum(1 for ch in text if ch in _NEGATION_CHARS)


def has_word(word: str, span: str) -> bool:
    """Whether a phrase word has a counterpart in a Latin span: a similar stretch
    (partial_ratio, so that a word the ASR merged, "helpyou", still counts) or a word with
    the same consonants (vowels are what ASR mishears most: "holding" heard as "haldeng")."""
    if fuzz.partial_ratio(word, span) >= WORD_MIN_RATIO:
        return True
    # Word boundaries are what ASR moves most freely ("call yeah in" for "calling"): the
    # span without its spaces and light words.
    if fuzz.partial_ratio(word, _squash(span)) >= WORD_MIN_RATIO:
        return True
    skeleton = _consonants(word)
    return len(skeleton) >= MIN_SKELETON and any(_consonants(w) == skeleton for w in span.split())


def _squash(span: str) -> str:
    """A Latin span without its light words and spaces."""
    return "".join(w for w in span.split() if w not in EN_LIGHT_WORDS)


def _consonants(word: str) -> str:
    return "".join(c for c in word if c not in "aeiouy")


#: Consonants a word needs before its skeleton alone may stand for it ("hold"/"held"/"hid"
#: would be one word at two).
MIN_SKELETON = 3


def _holds(anchor: NormalizedText, text: NormalizedText, x: int, y: int) -> bool:
    """Whether text[x:y] contains `anchor`: Chinese as characters or homophones (not
    near-homophones: 还 hai would be 好 hao), English as a word `has_word` accepts."""
    if not is_cjk(anchor.text[0]):
        return has_word(anchor.text, text.text[x:y])
    return anchor.text in text.text[x:y] or anchor.keys in text.keys[x:y]


def _spans_a_break(text: NormalizedText, x: int, y: int) -> bool:
    """Whether the transcript puts sentence punctuation inside the hit [x, y)."""
    return "1" in text.breaks[x + 1 : y]


def _before(hay: str, start: int) -> str:
    """What precedes a hit: the word before it, or the two characters before a CJK hit."""
    if start <= 0:
        return ""
    if is_cjk(hay[start]) or is_cjk(hay[start - 1]):
        return hay[max(0, start - 2) : start]
    return hay[: start - 1].rsplit(" ", 1)[-1]


def _align(needle: str, hay: str, start: int, cutoff: float) -> tuple[int, int, float] | None:
    region = hay[start:]
    if not region:
        return None
    if len(region) <= len(needle):
        # partial_ratio would look for the (shorter) text inside the phrase: compare whole.
        score = float(fuzz.ratio(needle, region))
        return (start, len(hay), score) if score >= cutoff else None
    found = fuzz.partial_ratio_alignment(needle, region, score_cutoff=cutoff)
    if found is None or found.score < cutoff:
        return None
    return start + found.dest_start, start + found.dest_end, float(found.score)
