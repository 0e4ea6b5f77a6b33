"""Compliance scripts as TOML data: loading, validation with clear messages, selection.

This module owns the file format of `config/scripts/*.toml` (one file per business line or
queue) and `ScriptBook.select`, which picks the script for a call from its metadata:

    name = "en-default"              # unique in the folder
    title = "English contact centre"
    language = "en"                  # "en" or "zh"
    default = true                   # the script for its language when no queue matches
    fallback = false                 # the script when nothing matches, language unknown
    queues = ["support"]             # call metadata `queue` values this script is for
    callees = ["8005550100"]         # or dialled numbers (DNIS)
    pass_score = 80

    [matching]                       # optional; these are the defaults
    tolerance = 0.2                  # share of a phrase's characters that may be misheard
    min_score = 75                   # no hit scores below this, however long the phrase
    turn_break_s = 1.2               # the other party speaking this long ends a turn
    turn_gap_s = 8                   # so does a pause this long

    [synonyms]                       # named phrase sets, used as {$thanks} in phrases
    thanks = ["thank you", "thanks", "I appreciate"]

    [intents]                        # optional: for the steps given as intents
    background = ["Your refund can take a week."]   # ordinary talk that is no step

    [[stage]]
    id = "greeting"
    party = "agent"                  # agent | customer | any
    window = { first_s = 10, from = "agent_speech" }  # or { last_s = 30 } or "anywhere"
    required = true
    severity = "major"               # info | minor | major | critical
    deduction = 10                   # points off 100 when missed
    after = []                       # stages that must be heard first
    order_deduction = 0
    tolerance = 0.25                 # optional: this rule's own [matching] tolerance
      [[stage.element]]              # every element must be heard, in one turn ...
      name = "offer"
      phrases = ["how {can|may} I help you"]   # ... any variant will do
      optional = false               # true: may be missing if the others match clearly
      own_name = false               # true: the agent's name from the call metadata
                                     # (`agentName`) also satisfies it ("... Emily, how")

    [[forbidden]]
    id = "rude"
    party = "agent"
    severity = "major"
    deduction = 15
    phrases = ["calm down"]

    [[exception]]
    id = "customer_in_hurry"
    party = "customer"
    phrases = ["I'm in a hurry"]
    suspends = ["closing"]           # stage or forbidden-rule ids
    for_s = 0                        # 0 = the rest of the call

A stage may give `phrases = [...]` instead of elements: one element named after the stage.
Phrase variants expand `{a|b}` alternations and `{$set}` synonym references, so one line can
stand for a few dozen wordings.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import config
from monitor.qa.align import confusable_cap
from monitor.qa.embedding import SentenceEncoder
from monitor.qa.errors import ScriptInvalid
from monitor.qa.intents import Intent, IntentIndex, parse_intent
from monitor.qa.rules import (
    ComplianceScript,
    Element,
    ExceptionRule,
    ForbiddenRule,
    Selector,
    Severity,
    Speaker,
    Stage,
)
from monitor.qa.script_fields import (
    MAX_EXPANSIONS,
    Matching,
    Reader,
    check_references,
    expand,
    window,
)
from monitor.qa.textmatch import CompiledPhrase

__all__ = [
    "DEFAULT_SCRIPTS_DIR",
    "MAX_EXPANSIONS",
    "expand",
    "load_script_file",
    "script_from_dict",
]

DEFAULT_SCRIPTS_DIR = Path(config.__file__).resolve().parent / "scripts"
LANGUAGES = ("en", "zh")

_TOP_KEYS = {
    "name",
    "title",
    "language",
    "default",
    "fallback",
    "queues",
    "callees",
    "pass_score",
    "matching",
    "synonyms",
    "stage",
    "forbidden",
    "exception",
    "intents",
}
_MATCH_KEYS = {"tolerance", "min_score", "turn_break_s", "turn_gap_s"}
_STAGE_KEYS = {
    "id",
    "title",
    "party",
    "window",
    "required",
    "severity",
    "deduction",
    "after",
    "order_severity",
    "order_deduction",
    "phrases",
    "element",
    "tolerance",
    "intent",
}
_FORBIDDEN_KEYS = {
    "id",
    "title",
    "party",
    "severity",
    "deduction",
    "phrases",
    "tolerance",
    "intent",
}
_EXCEPTION_KEYS = {"id", "title", "party", "phrases", "suspends", "for_s", "tolerance"}


def _stage(
    r: Reader, raw: Any, i: int, m: Matching, synonyms: Mapping[str, tuple[str, ...]]
) -> Stage:
    where = f"stage[{i}]"
    if not isinstance(raw, dict):
        raise r.fail(where, "each [[stage]] must be a table")
    r.keys(raw, _STAGE_KEYS, where)
    sid = r.ident(raw, where)
    where = f"stage {sid!r}"
    m = m.override(r, raw, where)
    intent = _intent(r, raw, sid, where)
    if ("phrases" in raw) and ("element" in raw):
        raise r.fail(where, "give either phrases = [...] or [[stage.element]] tables, not both")
    if "phrases" not in raw and "element" not in raw and intent is None:
        raise r.fail(where, "give phrases = [...], [[stage.element]] tables or an intent")
    elements = []
    if "phrases" in raw:
        phrases = r.strings(raw, "phrases", where, required=True)
        elements.append(Element(sid, m.compile(r, phrases, where, synonyms)))
    elif "element" in raw:
        if not isinstance(raw["element"], list) or not raw["element"]:
            raise r.fail(where, "[[stage.element]] must list at least one element")
        for j, el in enumerate(raw["element"]):
            ew = f"{where}: element[{j}]"
            if not isinstance(el, dict):
                raise r.fail(ew, "each [[stage.element]] must be a table")
            r.keys(el, {"name", "phrases", "optional", "own_name", "intent"}, ew)
            name = r.text(el, "name", ew, default=f"part{j + 1}")
            phrases = r.strings(el, "phrases", ew, required=True)
            elements.append(
                Element(
                    name,
                    m.compile(r, phrases, ew, synonyms),
                    r.flag(el, "optional", ew, False),
                    r.flag(el, "own_name", ew, False),
                    m.tolerance,
                    m.min_score,
                    _element_intent(r, el, f"{sid}:{name}", ew),
                )
            )
        if all(e.optional for e in elements):
            raise r.fail(where, "at least one element must not be optional")
    return Stage(
        id=sid,
        title=r.text(raw, "title", where, default=sid),
        party=r.choice(raw, "party", where, Speaker, Speaker.AGENT),
        elements=tuple(elements),
        window=window(r, raw.get("window"), where),
        required=r.flag(raw, "required", where, True),
        severity=r.choice(raw, "severity", where, Severity, Severity.MAJOR),
        deduction=r.number(raw, "deduction", where, 0.0, hi=100),
        after=r.strings(raw, "after", where),
        order_severity=r.choice(raw, "order_severity", where, Severity, Severity.MINOR),
        order_deduction=r.number(raw, "order_deduction", where, 0.0, hi=100),
        intent=intent,
    )


def _element_intent(r: Reader, raw: Mapping[str, Any], rule: str, where: str) -> Intent | None:
    if "intent" not in raw:
        return None
    return parse_intent(raw["intent"], rule, f"{r.source}: {where}", exclusive=False)


def _intent(r: Reader, raw: Mapping[str, Any], rule: str, where: str) -> Intent | None:
    if "intent" not in raw:
        return None
    return parse_intent(raw["intent"], rule, f"{r.source}: {where}")


def _rule_tables(
    r: Reader, raw: Mapping[str, Any], kind: str, allowed: set[str], m: Matching
) -> Iterator[tuple[Mapping[str, Any], str, str, Matching]]:
    """Each [[forbidden]] / [[exception]] table, checked: (table, id, where, its matching)."""
    for i, table in enumerate(raw.get(kind, [])):
        where = f"{kind}[{i}]"
        if not isinstance(table, dict):
            raise r.fail(where, f"each [[{kind}]] must be a table")
        r.keys(table, allowed, where)
        rid = r.ident(table, where)
        where = f"{kind} {rid!r}"
        yield table, rid, where, m.override(r, table, where)


def script_from_dict(
    raw: Mapping[str, Any],
    source: str = "<script>",
    encoder: SentenceEncoder | None = None,
    semantic: bool = True,
) -> ComplianceScript:
    """Validate one parsed TOML document; every problem raises `ScriptInvalid`. Intents'
    examples are encoded with `encoder` (shared by a `ScriptBook`; a new one if None);
    `semantic=False` validates the intents but leaves them unmatched (no model loads)."""
    r = Reader(source)
    r.keys(raw, _TOP_KEYS, "top level")
    language = raw.get("language")
    if language not in LANGUAGES:
        raise r.fail(
            "top level", f"language must be one of {' | '.join(LANGUAGES)}, got {language!r}"
        )
    mraw = raw.get("matching", {})
    if not isinstance(mraw, dict):
        raise r.fail("matching", "must be a table")
    r.keys(mraw, _MATCH_KEYS, "matching")
    m = Matching(
        tolerance=r.number(mraw, "tolerance", "matching", 0.2, hi=0.5),
        min_score=r.number(mraw, "min_score", "matching", 75.0, lo=50, hi=100),
    )
    sraw = raw.get("synonyms", {})
    if not isinstance(sraw, dict):
        raise r.fail("synonyms", "must be a table of name = [phrases]")
    synonyms = {name: r.strings(sraw, name, "synonyms", required=True) for name in sraw}
    stage_raw = raw.get("stage", [])
    if not isinstance(stage_raw, list):
        raise r.fail("stage", "use [[stage]] tables")
    stages = tuple(_stage(r, s, i, m, synonyms) for i, s in enumerate(stage_raw))
    forbidden = []
    for f, fid, where, fm in _rule_tables(r, raw, "forbidden", _FORBIDDEN_KEYS, m):
        forbidden.append(
            ForbiddenRule(
                id=fid,
                title=r.text(f, "title", where, default=fid),
                party=r.choice(f, "party", where, Speaker, Speaker.AGENT),
                phrases=fm.compile(
                    r, r.strings(f, "phrases", where, required="intent" not in f), where, synonyms
                ),
                severity=r.choice(f, "severity", where, Severity, Severity.MAJOR),
                deduction=r.number(f, "deduction", where, 0.0, hi=100),
                intent=_intent(r, f, fid, where),
            )
        )
    exceptions = []
    for e, eid, where, em in _rule_tables(r, raw, "exception", _EXCEPTION_KEYS, m):
        exceptions.append(
            ExceptionRule(
                id=eid,
                title=r.text(e, "title", where, default=eid),
                party=r.choice(e, "party", where, Speaker, Speaker.CUSTOMER),
                phrases=em.compile(
                    r, r.strings(e, "phrases", where, required=True), where, synonyms
                ),
                suspends=r.strings(e, "suspends", where, required=True),
                for_s=r.number(e, "for_s", where, 0.0, hi=86400),
            )
        )
    check_references(r, stages, forbidden, exceptions)
    background = _background(r, raw)  # validated even when the intents stay unmatched
    stages, forbidden = _guard_confusables(stages, forbidden)
    if not stages and not forbidden:
        raise r.fail("top level", "a script needs at least one [[stage]] or [[forbidden]]")
    return ComplianceScript(
        name=r.text(raw, "name", "top level", default=Path(source).stem),
        title=r.text(raw, "title", "top level", default=str(raw.get("name", source))),
        language=language,
        source=source,
        stages=stages,
        forbidden=tuple(forbidden),
        exceptions=tuple(exceptions),
        selector=Selector(
            queues=frozenset(q.lower() for q in r.strings(raw, "queues", "top level")),
            callees=frozenset(r.strings(raw, "callees", "top level")),
            default=r.flag(raw, "default", "top level", False),
            fallback=r.flag(raw, "fallback", "top level", False),
        ),
        pass_score=r.number(raw, "pass_score", "top level", 80.0, hi=100),
        turn_break_ms=int(1000 * r.number(mraw, "turn_break_s", "matching", 1.2, hi=60)),
        turn_gap_ms=int(1000 * r.number(mraw, "turn_gap_s", "matching", 8.0, lo=0.5, hi=600)),
        intents=_index(stages, forbidden, encoder, background) if semantic else None,
    )


def _background(r: Reader, raw: Mapping[str, Any]) -> tuple[str, ...]:
    """The `[intents]` table: `background = [...]`, ordinary talk that is no step."""
    table = raw.get("intents", {})
    if not isinstance(table, dict):
        raise r.fail("intents", "must be a table (background = [...])")
    r.keys(table, {"background"}, "intents")
    return r.strings(table, "background", "intents")


def _index(
    stages: tuple[Stage, ...],
    forbidden: list[ForbiddenRule],
    encoder: SentenceEncoder | None,
    background: tuple[str, ...] = (),
) -> IntentIndex | None:
    found: list[Intent | None] = [s.intent for s in stages] + [f.intent for f in forbidden]
    found += [e.intent for s in stages for e in s.elements]
    intents = tuple(x for x in found if x is not None)
    if not intents:
        return None
    return IntentIndex(intents, encoder or SentenceEncoder(), background)


def _guard_confusables(
    stages: tuple[Stage, ...], forbidden: list[ForbiddenRule]
) -> tuple[tuple[Stage, ...], list[ForbiddenRule]]:
    """Cap each phrase's weighted-alignment budget (`monitor.qa.align.confusable_cap`) so
    that another rule's phrase, said exactly, never passes for it."""
    rules: list[tuple[str, tuple[CompiledPhrase, ...]]] = [
        (s.id, tuple(p for e in s.elements for p in e.phrases)) for s in stages
    ]
    rules += [(f.id, f.phrases) for f in forbidden]

    def capped(rule_id: str, phrases: tuple[CompiledPhrase, ...]) -> tuple[CompiledPhrase, ...]:
        others = [p.seq for rid, ps in rules if rid != rule_id for p in ps]
        return tuple(replace(p, budget=confusable_cap(p.seq, p.budget, others)) for p in phrases)

    new_stages = tuple(
        replace(s, elements=tuple(replace(e, phrases=capped(s.id, e.phrases)) for e in s.elements))
        for s in stages
    )
    return new_stages, [replace(f, phrases=capped(f.id, f.phrases)) for f in forbidden]


def load_script_file(
    path: Path | str, encoder: SentenceEncoder | None = None, semantic: bool = True
) -> ComplianceScript:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptInvalid(f"{path}: cannot read compliance script: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScriptInvalid(f"{path}: not valid TOML: {exc}") from None
    return script_from_dict(raw, source=str(path), encoder=encoder, semantic=semantic)
