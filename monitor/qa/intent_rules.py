"""What an intent is: the rule as a script gives it, validated, and the text guards.

This module owns `Intent` (a step described by example utterances, near misses, anchors,
vetoes, threshold and margin) and `parse_intent`, which validates a script's
`[stage.intent]` / `[forbidden.intent]` table with messages naming the file and the field,
and the guards that work on the text itself, before any vector is compared:

* `clauses(text)`: a segment cut at punctuation, with character spans (the units that are
  encoded and combined into windows, `monitor.qa.intents`);
* `negated(text)`: whether a text negates something; courtesy idioms (不好意思, "no
  problem"), A-not-A questions (还有没有), 别 meaning "other" (别的, 别人), 没错 / 不错 and a
  clause-final question tag (可以了没？) are no negations;
* `Intent.admits(window, segment)`: anchors (one must be in the window), vetoes (none may
  be in the segment or the window), and a whole step's minimum size (`MIN_STEP_SIZE`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.qa.embedding import SentenceEncoder
from monitor.qa.errors import ScriptInvalid
from monitor.qa.pinyin import is_cjk
from monitor.qa.textmatch import count_negations, normalize

#: A whole step's window needs this many Chinese characters plus Latin words: up to four
#: syllables ("请讲", "您还，请讲", "Yes please") carry too little meaning to tell one step
#: from another (the phrases still catch the short standard wordings, "请您稍等").
MIN_STEP_SIZE = 5
#: Cosine an example must reach (a rule may set its own `threshold`); tuned on the tuning set.
DEFAULT_THRESHOLD = 0.6
#: How far the nearest example must beat every near miss and every other intent's example.
DEFAULT_MARGIN = 0.03
_CLAUSE_END = re.compile(r"[,.;:!?，。；：！？、…]+")
#: Courtesy words that contain a negation character or word but negate nothing.
_NOT_NEGATIONS = re.compile(
    r"不好意思|不客气|没问题|不用谢|\bno problem\b|\bnot a problem\b|\bno worries\b"
    # 没关系 is "never mind", but "跟我们没关系" / "和您没关系" says "nothing to do with":
    # a negation (the brush-off "这事跟我们没关系" must not match un-negated examples).
    r"|(?<![跟和与同])(?<![跟和与同].)(?<![跟和与同]..)(?<![跟和与同]...)(?<![跟和与同]....)没关系"
    # A-not-A questions (有没有, 是不是, 能不能, 听没听): a yes/no question, not a negation:
    # "还有没有别的需要？" asks what "还有别的需要吗？" asks.
    r"|([\u4e00-\u9fff])[不没]\1"
    # 别 is "don't" alone, but "other" or part of another word in these.
    r"|别的|别人|别处|别家|特别|区别|分别|级别|类别|识别|个别|告别"
    # "没错吧" / "不错" confirm; a clause-final 不 / 没 asks ("可以帮您了没？").
    r"|没错|不错|[不没](?=[\s,.;:!?，。；：！？、…]|$)",
    re.IGNORECASE,
)


def negated(text: str) -> bool:
    """Whether a text negates something (courtesy idioms like 不好意思 aside)."""
    return count_negations(normalize(_NOT_NEGATIONS.sub(" ", text)).text) > 0


def clauses(text: str) -> list[tuple[str, int, int]]:
    """(clause, start, end) character spans of `text`, cut at punctuation."""
    out, pos = [], 0
    for m in _CLAUSE_END.finditer(text + "."):
        piece = text[pos : m.start()]
        if piece.strip():
            lead = len(piece) - len(piece.lstrip())
            out.append((piece.strip(), pos + lead, pos + lead + len(piece.strip())))
        pos = m.end()
    return out


@dataclass(frozen=True, slots=True)
class Intent:
    """What a step must achieve, and how it is usually said (script language)."""

    rule: str  # the stage or forbidden rule it belongs to
    description: str
    examples: tuple[str, ...]
    near_misses: tuple[str, ...] = ()
    threshold: float = 0.6  # DEFAULT_THRESHOLD
    margin: float = 0.03  # DEFAULT_MARGIN
    #: The window must contain one of these (when any are given): the words that tell a
    #: step from a confusable one ("else" / 其他 for "anything else?" vs the offer of help).
    anchors: tuple[str, ...] = ()
    #: The segment must contain none of these: a farewell makes "thank you for your
    #: patience, goodbye" a closing, not a hold return.
    vetoes: tuple[str, ...] = ()
    #: A whole step (stage or forbidden rule): the steps' examples are each other's rivals.
    #: An element's intent (one part of a step, "offer of help") is not: the closing's
    #: "thank you for calling" may mean the same as the greeting's.
    exclusive: bool = True

    def admits(self, window: str, segment: str) -> bool:
        """Whether the anchors and vetoes allow a match of `window` within `segment`; a
        whole step needs a window of some substance ("请讲" is no hold notice)."""
        if self.exclusive and size_of(window) < MIN_STEP_SIZE:
            return False
        if self.anchors and not any(_has(a, window) for a in self.anchors):
            return False
        return not any(_has(v, segment) or _has(v, window) for v in self.vetoes)


def size_of(text: str) -> int:
    """Chinese characters plus Latin words: how much was said."""
    return sum(1 for ch in text if is_cjk(ch)) + len(re.findall(r"[A-Za-z]+", text))


def _has(term: str, text: str) -> bool:
    """`term` in `text`: as a whole word for Latin script, as a substring for Chinese."""
    text, term = SentenceEncoder.key(text).lower(), SentenceEncoder.key(term).lower()
    if term.isascii():
        return re.search(rf"\b{re.escape(term)}\b", text) is not None
    return term in text


_INTENT_KEYS = {
    "description",
    "examples",
    "near_misses",
    "anchors",
    "vetoes",
    "threshold",
    "margin",
}


def parse_intent(raw: object, rule: str, where: str, exclusive: bool = True) -> Intent:
    """An `intent = { ... }` table of a script (see `monitor.qa.scripts`), validated."""
    if not isinstance(raw, dict):
        raise ScriptInvalid(f"{where}: intent must be a table (description, examples, ...)")
    unknown = sorted(set(raw) - _INTENT_KEYS)
    if unknown:
        raise ScriptInvalid(
            f"{where}: intent: unknown key {unknown[0]!r} "
            f"(known: {', '.join(sorted(_INTENT_KEYS))})"
        )
    description = raw.get("description")
    if not isinstance(description, str) or not description.strip():
        raise ScriptInvalid(f"{where}: intent: description must be a non-empty string")
    lists = {}
    for key in ("examples", "near_misses", "anchors", "vetoes"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise ScriptInvalid(f"{where}: intent: {key} must be a list of non-empty strings")
        lists[key] = tuple(v.strip() for v in value)
    if len(lists["examples"]) < 2:
        raise ScriptInvalid(f"{where}: intent: give at least 2 examples of how the step is said")
    numbers = {}
    for key, default, lo, hi in (
        ("threshold", DEFAULT_THRESHOLD, 0.3, 0.99),
        ("margin", DEFAULT_MARGIN, 0.0, 0.5),
    ):
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise ScriptInvalid(
                f"{where}: intent: {key} must be a number from {lo} to {hi}, got {value!r}"
            )
        numbers[key] = float(value)
    return Intent(
        rule,
        description.strip(),
        lists["examples"],
        lists["near_misses"],
        numbers["threshold"],
        numbers["margin"],
        lists["anchors"],
        lists["vetoes"],
        exclusive,
    )
