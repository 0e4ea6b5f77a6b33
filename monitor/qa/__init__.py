"""Compliance: service scripts as data, checked live against each party's transcript.

* `load_compliance_scripts(dir)` -> `ScriptBook`; `ScriptBook.select(metadata, language)`
  -> `ComplianceScript` (shipped defaults in `config/scripts/`, format in `monitor.qa.scripts`).
* `ComplianceChecker(script, agent_name)`: sans-I/O, one per call. `on_segment(...)` and
  `advance(ms)` return live events; `finish(duration_ms)` returns the `ComplianceResult`.
  `agent_name` comes from the call metadata (`agent_name_of`) for elements that accept it.

* `TranscriptWatermark`: the media time to pass to `advance`, from what the runtime knows.

Modules: `normalize` (the matching form of a text), `textmatch` (pinyin keys, fuzzy
alignment of one phrase), `align` (the sound-aware weighted alignment for heavily damaged
transcripts), `transcript` (turns and media-time spans), `rules` (the script model),
`scripts` (TOML format, assembling a script), `script_fields` (field validation, phrase
expansion, cross-rule checks), `intent_rules` (an intent and its text guards), `intents`
(matching by meaning), `embedding` (the shared sentence encoder), `book` (selection),
`hits` (phrase, intent and element hits), `checker` (the live state machine), `scoring`
(checklist and score), `events` (what comes out), `watermark` (when a window may be
judged). The evaluation sets
and error injection live outside the product, in the top-level `evaluation` package.
"""

# The names below are loaded on first use (PEP 562): `monitor.events` imports
# `monitor.qa.events`, which runs this file first, and an eager import here would load the
# whole checker (pypinyin, cn2an, rapidfuzz, the intents) into every process that only
# speaks the event vocabulary (the ASR workers, the CLI, the board).
import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.qa.book import ScriptBook, load_compliance_scripts
    from monitor.qa.checker import ComplianceChecker
    from monitor.qa.errors import CheckerFinished, ComplianceError, ScriptInvalid, ScriptNotFound
    from monitor.qa.events import (
        ComplianceEvent,
        ComplianceResult,
        Deduction,
        ForbiddenPhraseSaid,
        OrderViolated,
        PhraseMatched,
        PhraseMissed,
        RuleSuspended,
        StageChecked,
        StageStatus,
    )
    from monitor.qa.rules import ComplianceScript, agent_name_of
    from monitor.qa.scripts import DEFAULT_SCRIPTS_DIR, load_script_file, script_from_dict
    from monitor.qa.watermark import TranscriptWatermark

_HOME = {
    "ScriptBook": "book", "load_compliance_scripts": "book",
    "ComplianceChecker": "checker",
    "CheckerFinished": "errors", "ComplianceError": "errors", "ScriptInvalid": "errors",
    "ScriptNotFound": "errors",
    "ComplianceEvent": "events", "ComplianceResult": "events", "Deduction": "events",
    "ForbiddenPhraseSaid": "events", "OrderViolated": "events", "PhraseMatched": "events",
    "PhraseMissed": "events", "RuleSuspended": "events", "StageChecked": "events",
    "StageStatus": "events",
    "ComplianceScript": "rules", "agent_name_of": "rules",
    "DEFAULT_SCRIPTS_DIR": "scripts", "load_script_file": "scripts", "script_from_dict": "scripts",
    "TranscriptWatermark": "watermark",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'monitor.qa' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"monitor.qa.{home}"), name)
    globals()[name] = value  # once: later lookups do not come here
    return value


__all__ = [
    "DEFAULT_SCRIPTS_DIR",
    "CheckerFinished",
    "ComplianceChecker",
    "ComplianceError",
    "ComplianceEvent",
    "ComplianceResult",
    "ComplianceScript",
    "Deduction",
    "ForbiddenPhraseSaid",
    "OrderViolated",
    "PhraseMatched",
    "PhraseMissed",
    "RuleSuspended",
    "ScriptBook",
    "ScriptInvalid",
    "ScriptNotFound",
    "StageChecked",
    "StageStatus",
    "TranscriptWatermark",
    "agent_name_of",
    "load_compliance_scripts",
    "load_script_file",
    "script_from_dict",
]
