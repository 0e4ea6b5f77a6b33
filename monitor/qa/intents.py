"""Intent-level rules: a step described by example utterances, matched by meaning.

A script's stage or forbidden rule may carry an `[stage.intent]` / `[forbidden.intent]`
table (format in `monitor.qa.scripts`): a short description, a handful of example
utterances in the script's language, and optional near misses (wordings that must *not*
count, e.g. "Hello, Acme Bank." for a greeting). Its phrases stay the precise, lexical layer;
the intent catches the many other ways the step is said.

How a party's speech is matched (`IntentTracker`, one per call):
* each segment is cut into clauses at punctuation; each clause is encoded once
  (`monitor.qa.embedding`, cached);
* windows of 1 to `WINDOW_CLAUSES` consecutive clauses of the party's current turn, ending at
  a new clause, are scored: the window's vector is the normalised sum of its clauses'
  vectors, so a greeting spread over "thanks for calling X" / "I'm Anna" / "how can I help"
  scores as a whole;
* a window matches an intent when its best example scores >= the intent's threshold and
  beats, by the intent's margin, every near miss of the intent and every example of the
  script's other intents (the anchor that keeps confusable steps apart: "anything else I can
  help you with?" is nearer the pre-closing's examples than the greeting's);
* a whole step must also beat the script's nearest background line (ordinary talk that is
  no step, `[intents] background`) by `BACKGROUND_MARGIN`, and is read in whole sentences:
  its window starts where a sentence does, after light openers only ("Okay,", "您好，");
* negation must agree: a window with a negation ("I can't help you with that") never
  matches an example without one ("how can I help you"), and the other way round.
The rule itself (`Intent`, its validation and the text guards) is `monitor.qa.intent_rules`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from monitor.qa.embedding import SentenceEncoder
from monitor.qa.intent_rules import (
    DEFAULT_MARGIN,
    DEFAULT_THRESHOLD,
    MIN_STEP_SIZE,
    Intent,
    clauses,
    negated,
    parse_intent,
    size_of,
)

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_THRESHOLD",
    "MIN_STEP_SIZE",
    "Intent",
    "IntentHit",
    "IntentIndex",
    "IntentTracker",
    "clauses",
    "negated",
    "parse_intent",
]

#: Consecutive clauses a window may span (a greeting is typically three).
WINDOW_CLAUSES = 4
#: Clauses of a turn kept for windows (older ones can no longer start a window).
KEEP_CLAUSES = WINDOW_CLAUSES
#: How much weaker a rival example (or near miss) counts when its negation disagrees with
#: the window's: enough that "I can't help you, ask someone else" is still a brush-off
#: beside "how can I help you", not so much that a misheard 没 frees a greeting from its
#: rivals. Set on the tuning set.
NEGATION_RIVAL_PENALTY = 0.1
#: How far a whole step's nearest example must beat the script's nearest background line
#: (ordinary talk that is no step): more than the margin over another step, because a
#: background line is the one thing a step must never be mistaken for. Set on the
#: development set (`scripts/bench_intents.py`).
BACKGROUND_MARGIN = 0.05
#: Where a sentence ends: no window runs across it (the next sentence is another act).
_SENTENCE_END = re.compile(r"[.!?。！？]")
#: A clause this small (Chinese characters plus Latin words) before a window is an opener
#: ("Okay", "Right", "您好", "明白了"), not the start of what the window says.
OPENER_SIZE = 3


@dataclass(frozen=True, slots=True)
class IntentHit:
    rule: str
    score: float  # cosine to the nearest example
    example: str  # that example
    text: str  # the window as transcribed
    start_ms: int
    end_ms: int
    margin: float  # score minus threshold


@dataclass(eq=False)
class IntentIndex:
    """Every intent of one script with its examples' vectors (computed once, at load)."""

    intents: tuple[Intent, ...]
    encoder: SentenceEncoder
    #: Ordinary agent talk that is no step at all (the script's `[intents] background`):
    #: every whole step must beat its nearest line by the step's margin, as it beats the
    #: other steps' examples. "Please allow five days for the refund" is about waiting but
    #: is no hold notice; "we'll post it to your billing address" names an address but asks
    #: for none.
    background: tuple[str, ...] = ()
    _rows: list[tuple[str, bool]] = field(default_factory=list)  # (text, negated)
    _vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    def __post_init__(self) -> None:
        # Rows: every intent's examples, then every intent's near misses, each contiguous, so
        # an intent's best example or near miss is the max over a slice.
        self._ex: list[slice] = []
        self._nm: list[slice] = []
        for intent in self.intents:
            self._ex.append(slice(len(self._rows), len(self._rows) + len(intent.examples)))
            self._rows += [(t, negated(t)) for t in intent.examples]
        for intent in self.intents:
            self._nm.append(slice(len(self._rows), len(self._rows) + len(intent.near_misses)))
            self._rows += [(t, negated(t)) for t in intent.near_misses]
        self._bg = slice(len(self._rows), len(self._rows) + len(self.background))
        self._rows += [(t, negated(t)) for t in self.background]
        self._vectors = self._clause_sums([r[0] for r in self._rows])
        self._neg = np.array([r[1] for r in self._rows])
        self._exclusive = np.array([x.exclusive for x in self.intents], dtype=bool)
        self._anchored = np.array([bool(x.anchors) for x in self.intents], dtype=bool)

    def _clause_sums(self, texts: list[str]) -> np.ndarray:
        """Each text as the transcript windows are scored: the normalised sum of its
        clauses' vectors (a whole-sentence vector of a three-part greeting sits far from
        the sum of its parts)."""
        parts = [[c for c, _, _ in clauses(t)] or [t] for t in texts]
        flat = self.encoder.encode([c for p in parts for c in p])
        out, k = np.zeros((len(texts), flat.shape[1]), dtype=np.float32), 0
        for i, p in enumerate(parts):
            out[i] = flat[k : k + len(p)].sum(axis=0)
            k += len(p)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-6)
        return out

    def match(
        self,
        windows: np.ndarray,
        texts: list[str],
        negs: list[bool],
        segment: str,
        whole: list[bool] | None = None,
    ) -> list[tuple[int, int, float, int]]:
        """For windows (rows of unit vectors, with their texts, all ending in `segment`):
        every (window, intent, score, example row) that passes threshold, margin, negation
        agreement, anchors and vetoes. An intent whose anchors or vetoes rule a window out
        is no rival there either."""
        raw = windows @ self._vectors.T  # windows x rows
        disagree = np.array(negs)[:, None] != self._neg[None, :]
        # A match needs the negation to agree; a rival counts either way, a little weaker
        # when it disagrees: a greeting whose "帮您" the ASR heard as "帮没" is still nearer
        # the greeting than any brush-off, and must not be left with brush-offs alone.
        sims = np.where(disagree, -1.0, raw)
        rivals = np.where(disagree, raw - NEGATION_RIVAL_PENALTY, raw)
        n = len(self.intents)
        best = np.empty((len(negs), n), dtype=np.float32)
        rows = np.empty((len(negs), n), dtype=np.int64)
        near = np.full((len(negs), n), -2.0, dtype=np.float32)
        rival_best = np.empty((len(negs), n), dtype=np.float32)
        admitted = np.array(
            [[x.admits(t, segment) for x in self.intents] for t in texts], dtype=bool
        ).reshape(len(texts), n)
        for i in range(n):
            part = sims[:, self._ex[i]]
            rows[:, i] = part.argmax(axis=1) + self._ex[i].start
            best[:, i] = part.max(axis=1)
            rival_best[:, i] = rivals[:, self._ex[i]].max(axis=1)
            if self._nm[i].stop > self._nm[i].start:
                near[:, i] = rivals[:, self._nm[i]].max(axis=1)
        best[~admitted] = -2.0
        rival_best[~admitted] = -2.0
        if whole is not None:
            # A whole step is said in whole sentences: the tail of one ("请您耐心等待" after
            # "退款审核需要三到五个工作日") is read with the words it ends, not alone. An
            # element (one part of a greeting) may be one clause of a sentence.
            part = ~np.array(whole, dtype=bool)
            best[np.ix_(part, self._exclusive)] = -2.0
        # Every other intent's best example is a rival of a whole step's intent (an element's
        # intent has only its near misses): the best and second best per window give "the
        # best of the others" for each intent.
        order = np.sort(rival_best, axis=1)
        top = order[:, -1:]
        second = order[:, -2:-1] if n > 1 else np.full_like(top, -2.0)
        others = np.where(rival_best >= top, second, top)
        # An anchored step ("else" / 还 for "anything else?") is told from the greeting's
        # offer of help by its anchors: the elements' examples are no rivals of it, only the
        # other whole steps are ("还有没有别的需要" is near "您有什么需要" by design).
        steps = np.where(self._exclusive[None, :], rival_best, -2.0)
        order = np.sort(steps, axis=1)
        top_s = order[:, -1:]
        second_s = order[:, -2:-1] if n > 1 else np.full_like(top_s, -2.0)
        step_others = np.where(steps >= top_s, second_s, top_s)
        others = np.where(self._anchored[None, :], step_others, others)
        if self._bg.stop > self._bg.start:
            # The background rivals every whole step (never an element: "thank you" is
            # ordinary talk and half a closing).
            background = rivals[:, self._bg].max(axis=1, keepdims=True) + BACKGROUND_MARGIN
        else:
            background = np.full((len(negs), 1), -2.0, dtype=np.float32)
        rival = np.where(self._exclusive[None, :], np.maximum(near, others), near)
        thresholds = np.array([x.threshold for x in self.intents], dtype=np.float32)
        margins = np.array([x.margin for x in self.intents], dtype=np.float32)
        ok = (best >= thresholds) & (best >= rival + margins)
        ok &= ~self._exclusive[None, :] | (best >= background)
        return [(int(w), int(i), float(best[w, i]), int(rows[w, i])) for w, i in np.argwhere(ok)]

    def example(self, row: int) -> str:
        return self._rows[row][0]


def _inside(h: IntentHit, g: IntentHit) -> bool:
    return g is not h and g.start_ms <= h.start_ms and h.end_ms <= g.end_ms


@dataclass(slots=True)
class _Clause:
    text: str
    start_ms: int
    end_ms: int
    vector: np.ndarray
    negated: bool
    final: bool = False  # ends a sentence


class IntentTracker:
    """One call's intent matching: the current turn's recent clauses per party."""

    def __init__(self, index: IntentIndex) -> None:
        self.index = index
        self._turns: dict[str, tuple[int, list[_Clause]]] = {}
        self._tail: dict[str, str] = {}  # each party's last segment's last character

    def add(self, party: str, turn: int, start_ms: int, end_ms: int, text: str) -> list[IntentHit]:
        """A new segment of `party`'s turn number `turn`: the best hit per intent among the
        windows that end in it."""
        spans = clauses(text)
        if not spans:
            return []
        with self.index.encoder.one_thread():
            return self._add(party, turn, start_ms, end_ms, text, spans)

    @staticmethod
    def _whole(kept: list[_Clause], a: int, b: int) -> bool:
        if b - a + 1 >= WINDOW_CLAUSES:
            return True
        for k in range(a - 1, -1, -1):
            if kept[k].final:
                return True
            if size_of(kept[k].text) > OPENER_SIZE:
                return False
        return True

    def _add(
        self,
        party: str,
        turn: int,
        start_ms: int,
        end_ms: int,
        text: str,
        spans: list[tuple[str, int, int]],
    ) -> list[IntentHit]:
        number, kept = self._turns.get(party, (turn, []))
        if number != turn:
            kept = []
        vectors = self.index.encoder.encode([c for c, _, _ in spans])
        size = max(1, len(text))
        first_new = len(kept)
        if kept:
            # A segment that ended without punctuation may go on in this one (the ASR cut a
            # sentence at a pause); one that ended a sentence does not.
            kept[-1].final = kept[-1].final or bool(_SENTENCE_END.search(self._tail.get(party, "")))
        for (clause, a, b), vector in zip(spans, vectors, strict=True):
            kept.append(
                _Clause(
                    clause,
                    start_ms + (end_ms - start_ms) * a // size,
                    start_ms + (end_ms - start_ms) * b // size,
                    vector,
                    negated(clause),
                    bool(_SENTENCE_END.match(text[b : b + 1])),
                )
            )
        self._tail[party] = text.rstrip()[-1:]
        windows: list[tuple[int, int]] = [
            (j - n + 1, j)
            for j in range(first_new, len(kept))
            for n in range(1, WINDOW_CLAUSES + 1)
            if j - n + 1 >= 0 and not any(kept[k].final for k in range(j - n + 1, j))
        ]
        sums = np.stack([sum(kept[k].vector for k in range(a, b + 1)) for a, b in windows])
        sums /= np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-6)
        texts = [" ".join(c.text for c in kept[a : b + 1]) for a, b in windows]
        negs = [any(kept[k].negated for k in range(a, b + 1)) for a, b in windows]
        best: dict[int, IntentHit] = {}
        # A window is sentence-whole when it starts where a sentence does (or the turn's
        # kept clauses do), after nothing but light openers ("Okay," "您好，" "明白了，"),
        # or spans as many clauses as a window may.
        whole = [self._whole(kept, a, b) for a, b in windows]
        for w, i, score, row in self.index.match(sums, texts, negs, text, whole):
            a, b = windows[w]
            intent = self.index.intents[i]
            if i in best and best[i].score >= score:
                continue
            best[i] = IntentHit(
                intent.rule,
                score,
                self.index.example(row),
                texts[w],
                kept[a].start_ms,
                kept[b].end_ms,
                score - intent.threshold,
            )
        self._turns[party] = (turn, kept[-KEEP_CLAUSES:])
        hits = list(best.values())
        # One stretch of speech is one step: a hit inside another intent's better-scoring
        # window is part of that step ("thank you for your patience" in a closing is no
        # hold return; "很高兴为您服务" in a greeting neither).
        exclusive = {x.rule for x in self.index.intents if x.exclusive}
        return [
            h
            for h in hits
            if h.rule not in exclusive
            or not any(_inside(h, g) and g.score > h.score for g in hits if g.rule in exclusive)
        ]
