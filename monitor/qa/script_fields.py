"""The fields of a compliance script file: validation helpers, phrase wordings, windows.

This module owns reading one value or one small table of `config/scripts/*.toml` (the
format is described in `monitor.qa.scripts`, which assembles a whole script from these):

* `Reader`: typed getters (text, number, flag, list of strings, choice, id) whose every
  failure raises `ScriptInvalid` naming the file and the field, with a "did you mean"
  for a misspelt key;
* `expand(phrase, synonyms)`: all the wordings of a phrase, `{a|b}` choices and `{$set}`
  synonym references expanded (bounded: at most `MAX_EXPANSIONS` per phrase, sets nested at
  most 4 deep, so a script cannot ask for unbounded work);
* `window(...)`: a stage's `window` ("anywhere", `first_s` with its anchor, `last_s`);
* `Matching`: the `[matching]` settings a rule inherits or overrides, and the compiling
  of its phrases into `CompiledPhrase`s;
* `check_references(...)`: the checks across rules: ids unique, `after` naming other
  stages without a cycle, exceptions suspending rules that exist.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from monitor.qa.errors import ScriptInvalid
from monitor.qa.rules import (
    Anchor,
    ExceptionRule,
    ForbiddenRule,
    Severity,
    Speaker,
    Stage,
    Window,
    WindowKind,
)
from monitor.qa.textmatch import CompiledPhrase

MAX_EXPANSIONS = 256
_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_BRACES = re.compile(r"\{([^{}]*)\}")
_E = TypeVar("_E", Severity, Speaker)


class Reader:
    """Validation helpers that prefix every message with the file and the field path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, where: str, message: str) -> ScriptInvalid:
        return ScriptInvalid(f"{self.source}: {where}: {message}")

    def keys(self, raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for key in raw:
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise self.fail(where, f"unknown key {key!r}{hint}")

    def text(self, raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
        value = raw.get(key, default)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(where, f"{key} must be a non-empty string, got {value!r}")
        return value.strip()

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        where: str,
        default: float,
        lo: float = 0.0,
        hi: float = float("inf"),
    ) -> float:
        value = raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(where, f"{key} must be a number, got {value!r}")
        if not lo <= value <= hi:
            raise self.fail(where, f"{key} must be between {lo:g} and {hi:g}, got {value!r}")
        return float(value)

    def flag(self, raw: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = raw.get(key, default)
        if not isinstance(value, bool):
            raise self.fail(where, f"{key} must be true or false, got {value!r}")
        return value

    def strings(
        self, raw: Mapping[str, Any], key: str, where: str, required: bool = False
    ) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.fail(where, f"{key} must be a list of non-empty strings, got {value!r}")
        if required and not value:
            raise self.fail(where, f"{key} must list at least one entry")
        return tuple(v.strip() for v in value)

    def choice(
        self, raw: Mapping[str, Any], key: str, where: str, kind: type[_E], default: _E
    ) -> _E:
        value = raw.get(key, default.value)
        try:
            return kind(value)
        except ValueError:
            options = " | ".join(m.value for m in kind)
            raise self.fail(where, f"{key} must be one of {options}, got {value!r}") from None

    def ident(self, raw: Mapping[str, Any], where: str) -> str:
        value = self.text(raw, "id", where)
        if not _ID.match(value):
            raise self.fail(where, f"id must be lower_snake_case (a-z, 0-9, _), got {value!r}")
        return value


def expand(
    phrase: str, synonyms: Mapping[str, tuple[str, ...]], where: str = "phrase", depth: int = 0
) -> list[str]:
    """All wordings of a phrase: `{a|b}` is a choice, `{$set}` any phrase of a synonym set
    (whose phrases may use choices and other sets in turn)."""
    if depth > 4:
        raise ScriptInvalid(f"{where}: synonym sets nest more than 4 deep in {phrase!r}")
    parts: list[list[str]] = []
    pos = 0
    for m in _BRACES.finditer(phrase):
        parts.append([phrase[pos : m.start()]])
        inner = m.group(1).strip()
        if inner.startswith("$"):
            name = inner[1:]
            if name not in synonyms:
                known = ", ".join(sorted(synonyms)) or "none"
                raise ScriptInvalid(f"{where}: unknown synonym set {{${name}}} (known: {known})")
            parts.append([w for p in synonyms[name] for w in expand(p, synonyms, where, depth + 1)])
        else:
            parts.append([choice.strip() for choice in inner.split("|")])
        pos = m.end()
    parts.append([phrase[pos:]])
    if "{" in phrase[pos:] or "}" in phrase[pos:]:
        raise ScriptInvalid(f"{where}: unbalanced braces in {phrase!r}")
    count = 1
    for options in parts:
        count *= len(options)
    if count > MAX_EXPANSIONS:
        raise ScriptInvalid(
            f"{where}: {phrase!r} expands to {count} wordings (at most {MAX_EXPANSIONS}); split it"
        )
    out = []
    for combo in itertools.product(*parts):
        text = " ".join("".join(combo).split())
        if text and text not in out:
            out.append(text)
    return out


def window(r: Reader, raw: Any, where: str) -> Window:
    hint = 'expected "anywhere", { first_s = N, from = "..." } or { last_s = N }'
    if raw is None or raw == "anywhere":
        return Window()
    if not isinstance(raw, dict):
        raise r.fail(where, f"window: {hint}, got {raw!r}")
    r.keys(raw, {"first_s", "last_s", "from"}, f"{where}: window")
    if ("first_s" in raw) == ("last_s" in raw):
        raise r.fail(where, f"window: give exactly one of first_s and last_s ({hint})")
    if "last_s" in raw:
        if "from" in raw:
            raise r.fail(where, "window: from applies to first_s windows only")
        seconds = r.number(raw, "last_s", f"{where}: window", 0.0, lo=0.5, hi=3600)
        return Window(WindowKind.LAST, seconds)
    seconds = r.number(raw, "first_s", f"{where}: window", 0.0, lo=0.5, hi=3600)
    anchor = raw.get("from", Anchor.CALL_START.value)
    try:
        return Window(WindowKind.FIRST, seconds, Anchor(anchor))
    except ValueError:
        options = " | ".join(a.value for a in Anchor)
        raise r.fail(where, f"window: from must be one of {options}, got {anchor!r}") from None


@dataclass(frozen=True, slots=True)
class Matching:
    tolerance: float
    min_score: float

    def override(self, r: Reader, raw: Mapping[str, Any], where: str) -> Matching:
        """A rule's own `tolerance`, if it sets one."""
        if "tolerance" not in raw:
            return self
        return Matching(r.number(raw, "tolerance", where, self.tolerance, hi=0.5), self.min_score)

    def compile(
        self,
        r: Reader,
        phrases: tuple[str, ...],
        where: str,
        synonyms: Mapping[str, tuple[str, ...]],
    ) -> tuple[CompiledPhrase, ...]:
        out: dict[str, CompiledPhrase] = {}
        for phrase in phrases:
            for wording in expand(phrase, synonyms, f"{r.source}: {where}"):
                try:
                    compiled = CompiledPhrase.build(wording, self.tolerance, self.min_score)
                except ValueError as exc:
                    raise r.fail(where, str(exc)) from None
                out.setdefault(compiled.norm, compiled)
        return tuple(out.values())


def check_references(
    r: Reader,
    stages: tuple[Stage, ...],
    forbidden: list[ForbiddenRule],
    exceptions: list[ExceptionRule],
) -> None:
    ids: set[str] = set()
    for rule_id in [s.id for s in stages] + [f.id for f in forbidden] + [e.id for e in exceptions]:
        if rule_id in ids:
            raise r.fail("top level", f"id {rule_id!r} is used twice")
        ids.add(rule_id)
    stage_ids = {s.id for s in stages}
    for stage in stages:
        for before in stage.after:
            if before not in stage_ids or before == stage.id:
                raise r.fail(
                    f"stage {stage.id!r}",
                    f"after: {before!r} is not another stage "
                    f"(stages: {', '.join(sorted(stage_ids))})",
                )
    check_acyclic(r, stages)
    targets = stage_ids | {f.id for f in forbidden}
    for exc in exceptions:
        for target in exc.suspends:
            if target not in targets:
                raise r.fail(
                    f"exception {exc.id!r}", f"suspends: {target!r} is no stage or forbidden rule"
                )


def check_acyclic(r: Reader, stages: tuple[Stage, ...]) -> None:
    after = {s.id: s.after for s in stages}
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        if node in path:
            cycle = " -> ".join((*path[path.index(node) :], node))
            raise r.fail(f"stage {node!r}", f"after: order constraints form a cycle: {cycle}")
        if node in done:
            return
        for before in after[node]:
            visit(before, (*path, node))
        done.add(node)

    for stage in stages:
        visit(stage.id, ())
