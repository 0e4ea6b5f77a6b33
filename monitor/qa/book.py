"""The set of compliance scripts a deployment uses, and the choice of one per call.

`load_compliance_scripts(dir)` reads every `*.toml` in a folder (default: the shipped
`config/scripts/`) into a `ScriptBook`. `ScriptBook.select(metadata, language)` picks, in
this order:

1. a script listing the call's queue (`queue`, `queueName`, `queue_name`), preferring one in
   the language hint when several do;
2. a script listing the dialled number (`callee`, `to`, `dnis`, `calledNumber`);
3. the `default = true` script for the language hint (or the metadata's `language`);
4. the `fallback = true` script;
5. the only script, if there is just one.

Otherwise `ScriptNotFound`. The language is often unknown when a call opens: select again
once the first transcript says which language the agent speaks, or pass `asr.language`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monitor.qa.embedding import SentenceEncoder
from monitor.qa.errors import ScriptInvalid, ScriptNotFound
from monitor.qa.rules import ComplianceScript
from monitor.qa.scripts import DEFAULT_SCRIPTS_DIR, load_script_file

_QUEUE_KEYS = ("queue", "queueName", "queue_name")
_CALLEE_KEYS = ("callee", "to", "dnis", "calledNumber")


def _field(metadata: Mapping[str, Any] | object, keys: tuple[str, ...]) -> str | None:
    for key in keys:
        if isinstance(metadata, Mapping):
            value = metadata.get(key)
        else:  # e.g. monitor.core.metadata.CallMetadata
            value = getattr(metadata, key, None)
        if value not in (None, ""):
            return str(value).strip()
    return None


class ScriptBook:
    """Immutable after construction; safe to share between calls."""

    def __init__(
        self, scripts: Iterable[ComplianceScript], encoder: SentenceEncoder | None = None
    ) -> None:
        self.scripts: tuple[ComplianceScript, ...] = tuple(scripts)
        #: The sentence encoder the scripts' intents use (None: no script has intents).
        self.encoder = encoder or next(
            (s.intents.encoder for s in self.scripts if s.intents is not None), None
        )
        if not self.scripts:
            raise ScriptInvalid("a script book needs at least one compliance script")
        names: dict[str, str] = {}
        defaults: dict[str, str] = {}
        fallbacks: list[str] = []
        for s in self.scripts:
            if s.name in names:
                raise ScriptInvalid(f"{s.source}: name {s.name!r} is also used by {names[s.name]}")
            names[s.name] = s.source
            if s.selector.default:
                if s.language in defaults:
                    raise ScriptInvalid(
                        f"{s.source}: two default scripts for language "
                        f"{s.language!r} (the other: {defaults[s.language]})"
                    )
                defaults[s.language] = s.source
            if s.selector.fallback:
                fallbacks.append(s.source)
        if len(fallbacks) > 1:
            raise ScriptInvalid(f"only one script may be the fallback, got {fallbacks}")

    def __len__(self) -> int:
        return len(self.scripts)

    def get(self, name: str) -> ComplianceScript:
        for script in self.scripts:
            if script.name == name:
                return script
        raise ScriptNotFound(
            f"no compliance script named {name!r} (have: {', '.join(s.name for s in self.scripts)})"
        )

    def select(
        self, metadata: Mapping[str, Any] | object | None = None, language: str | None = None
    ) -> ComplianceScript:
        """The script for a call; see the module docstring for the order of preference."""
        metadata = metadata if metadata is not None else {}
        language = language or _field(metadata, ("language", "lang"))
        queue = _field(metadata, _QUEUE_KEYS)
        if queue is not None:
            found = [s for s in self.scripts if queue.lower() in s.selector.queues]
            if found:
                return _prefer_language(found, language)
        callee = _field(metadata, _CALLEE_KEYS)
        if callee is not None:
            found = [s for s in self.scripts if callee in s.selector.callees]
            if found:
                return _prefer_language(found, language)
        if language is not None:
            for s in self.scripts:
                if s.selector.default and s.language == language:
                    return s
        for s in self.scripts:
            if s.selector.fallback:
                return s
        if len(self.scripts) == 1:
            return self.scripts[0]
        raise ScriptNotFound(
            f"no compliance script for queue={queue!r}, callee={callee!r}, "
            f"language={language!r}, and no fallback script"
        )


def _prefer_language(found: list[ComplianceScript], language: str | None) -> ComplianceScript:
    for s in found:
        if s.language == language:
            return s
    return found[0]


def load_compliance_scripts(
    directory: Path | str | None = None, semantic: bool = True
) -> ScriptBook:
    """Every `*.toml` in `directory` (default: the shipped `config/scripts/`), by file name.
    `semantic=False` (setting `compliance.semantic`): the scripts' phrases alone, their
    intents dropped (no sentence model is loaded)."""
    folder = Path(directory) if directory is not None else DEFAULT_SCRIPTS_DIR
    if not folder.is_dir():
        raise ScriptInvalid(f"{folder}: compliance scripts folder not found")
    paths = sorted(folder.glob("*.toml"))
    if not paths:
        raise ScriptInvalid(f"{folder}: no *.toml compliance scripts in it")
    # One sentence encoder for the whole book: the model loads once, example vectors and
    # transcript clauses share its cache, and the runtime prepares segments through it.
    if not semantic:
        return ScriptBook(load_script_file(p, semantic=False) for p in paths)
    encoder = SentenceEncoder()
    return ScriptBook((load_script_file(p, encoder) for p in paths), encoder)
