"""The labelled lines and calls of the compliance evaluation set: what each line says and
which script stage or forbidden rule it carries. Never on the live path.

Lines come from the synthetic contact-centre set (`shared/data/speech/tts/MANIFEST.tsv`:
exact text, category, what faster-whisper made of it) and, as filler, from real read speech
(`tests/data/speech`: LJ Speech, AISHELL-1; never the Asterisk IVR prompts, which say "please
hold"). `load_lines` reads them with their labels; `heldout_lines` gives the held-out agent
lines (written apart from what the scripts were tuned on) with the unlabelled context lines.
A `CallPlan` is one labelled call made of them: its turns, the stages said, the forbidden rules
broken, the order violations. How calls are drawn from the lines (`build_plans`) and how a
checker's result is scored against a plan are in `evaluation/callplans.py`.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("greeting", "verification", "confirmation", "hold", "pre_closing", "closing")

# Which stage each agent category says; files that say something else are listed below.
_CATEGORY_STAGE = {
    "greeting": "greeting",
    "paraphrase_greeting": "greeting",
    "verification": "verification",
    "hold": "hold",
    "closing": "closing",
    "paraphrase_closing": "closing",
}
_FILE_STAGES = {
    "en/a_closing_02": ("pre_closing",),
    "zh/a_closing_02": ("pre_closing",),
    "en/a_hold_04": ("confirmation",),
    "zh/a_hold_06": ("confirmation",),
    "en/a_near_miss_greeting_03": ("hold",),  # "Thank you for calling, please hold."
}
_FORBIDDEN = {
    "01": "shirking",
    "02": "dismissive",
    "03": "rude",
    "04": "shirking",
    "06": "improper_promise",
    "07": "improper_promise",
    "08": "credential_request",
}
_FORBIDDEN_05 = {"en": "rude", "zh": "dismissive"}  # "Calm down" / "你爱投诉就投诉，随便你"


@dataclass(frozen=True, slots=True)
class Line:
    file: str  # relative to its corpus root
    corpus: str  # "tts" or "speech"
    language: str
    role: str
    category: str
    text: str
    asr_text: str
    seconds: float
    stages: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()


def _labels(file: str, language: str, category: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    stem = file.removesuffix(".flac")
    if stem in _FILE_STAGES:
        return _FILE_STAGES[stem], ()
    if category == "forbidden":
        number = stem[-2:]
        return (), (_FORBIDDEN.get(number) or _FORBIDDEN_05[language],)
    stage = _CATEGORY_STAGE.get(category)
    return ((stage,) if stage else ()), ()


def load_lines(tts_manifest: Path, speech_manifest: Path | None = None) -> list[Line]:
    """Every synthetic line, plus LJ Speech / AISHELL-1 clips as `filler` customer lines."""
    lines = []
    with tts_manifest.open(encoding="utf-8", newline="") as fh:
        # A labelled file may open with `#` comment lines (what the set is, how it may be
        # used: heldout_round4.tsv); they are no rows.
        body = (row for row in fh if not row.startswith("#"))
        for row in csv.DictReader(body, delimiter="\t"):
            if "stages" in row:  # a file that labels each line itself (the held-out set)
                stages = tuple(x for x in row["stages"].split(",") if x)
                forbidden = tuple(x for x in (row.get("forbidden") or "").split(",") if x)
            else:
                stages, forbidden = _labels(row["file"], row["language"], row["category"])
            lines.append(
                Line(
                    row["file"],
                    "tts",
                    row["language"],
                    row["role"],
                    row["category"],
                    row["text"],
                    row.get("asr_text") or row["text"],
                    float(row.get("seconds") or 3.0),
                    stages,
                    forbidden,
                )
            )
    if speech_manifest is not None and speech_manifest.exists():
        with speech_manifest.open(encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                name = row["file"]
                if not name.startswith(("en/ljspeech_", "zh/aishell1_")) or not row["transcript"]:
                    continue
                lines.append(
                    Line(
                        name,
                        "speech",
                        row["language"],
                        "customer",
                        "filler",
                        row["transcript"],
                        row["transcript"],
                        float(row["seconds"]),
                    )
                )
    return lines


#: Categories that carry no label the scripts were tuned on: the held-out calls reuse them.
CONTEXT_CATEGORIES = frozenset({"neutral", "customer", "pii", "filler"})


def heldout_lines(heldout_tsv: Path | Iterable[Path], lines: Iterable[Line]) -> list[Line]:
    """Labelled agent lines of the given files (the held-out set,
    `tests/data/tts/heldout_round4.tsv`: wordings, companies and agent names written apart
    from the ones the scripts and their intents were tuned on, text only; or the tuning
    files) with the unlabelled context lines (neutral agent talk,
    customers, read speech) of `lines`."""
    files = [heldout_tsv] if isinstance(heldout_tsv, Path) else list(heldout_tsv)
    held = [line for f in files for line in load_lines(f)]
    return held + [x for x in lines if x.category in CONTEXT_CATEGORIES]


@dataclass(frozen=True, slots=True)
class PlannedTurn:
    party: str
    line: Line
    pause_s: float


@dataclass(frozen=True, slots=True)
class CallPlan:
    name: str
    language: str
    turns: tuple[PlannedTurn, ...]
    said: frozenset[str]  # stages the agent said (paraphrases included, near misses not)
    forbidden: frozenset[str]
    order: frozenset[tuple[str, str]]  # (stage heard too early, stage it must follow)
    variant: str  # e.g. "greeting=near_miss closing=paraphrase forbidden order"
    metadata: dict[str, str] = field(default_factory=dict)

    def timeline(self) -> list[tuple[str, int, int, str, str]]:
        """(party, start_ms, end_ms, text, asr_text) as the call would be rendered."""
        out, cursor = [], 0.0
        for turn in self.turns:
            start = max(0.0, cursor + turn.pause_s)
            end = start + turn.line.seconds
            out.append(
                (turn.party, int(start * 1000), int(end * 1000), turn.line.text, turn.line.asr_text)
            )
            cursor = max(cursor, end)
        return out
