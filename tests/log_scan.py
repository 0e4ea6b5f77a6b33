"""The log scanner of RELIABILITY.md P8: what must never be in a callwatch log, as regexes.

`LogScanner.scan_file(path)` returns one `Hit` per finding (file, line number, rule, and the
line with the finding masked, so the report itself leaks nothing). The rules:

* `bearer`: an `Authorization`-style credential (`Bearer …`, `Basic …`) that was not masked;
* `test-secret`: any token or password the suite itself uses (read from the test sources:
  `TOKEN = "…"`, `password="…"`, `"secret": "…"`), wherever it appears;
* `query-secret`: a `?token=` (or `access_token`, `key`, `signature`, `password` …) value;
* `pan`: a Luhn-valid 13-19 digit number, plain or grouped by spaces or dashes;
* `audio`: what an audio payload looks like in text: a long base64 run, a long hex run, or a
  Python bytes repr of binary data;
* `transcript`: the words of the fixture recordings (tests/data transcripts and TTS lines):
  six consecutive words of an English sentence, or eight characters of a Chinese one.

The plugin `tests.fixtures_logs` runs it over every log a test session wrote.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from monitor.runtime.logs import luhn

TESTS = Path(__file__).resolve().parent
_MASKED = r"\[(?:redacted|card)\]"

_BEARER = re.compile(
    rf"(?i)\b(?:bearer|basic)\s+(?!{_MASKED})(?=[A-Za-z0-9._~+/=:-]*[0-9=])[A-Za-z0-9._~+/=:-]{{6,}}"
)
_QUERY = re.compile(
    r"(?i)[?&;](?:token|access_token|api_key|apikey|key|signature|sig|password|passwd|secret)"
    rf"=(?!{_MASKED})[^&\s'\"#]+"
)
_PAN = re.compile(r"(?<![\d.])\d(?:[ -]?\d){12,18}(?![\d.])")
_AUDIO = (
    re.compile(r"[A-Za-z0-9+/]{120,}={0,2}"),  # base64 (a 20 ms frame of 8 kHz µ-law: 216)
    re.compile(r"(?i)\b[0-9a-f]{160,}\b"),  # hex (a SHA-256 is 64)
    re.compile(r"(?:\\x[0-9a-f]{2}){16,}"),  # bytes repr of binary data
)
_SECRET_LITERAL = re.compile(
    r"(?i)\b\w*(?:token|password|passwd|secret)\w*[\"']?\s*[:=]\s*f?[\"']"
    r"([^\"'{}\s\\][^\"'{}\\]{5,})[\"']"
)
_WORD = re.compile(r"[a-z0-9']+")
_CJK = re.compile(r"[\u4e00-\u9fff]+")
EN_SHINGLE, ZH_SHINGLE = 6, 8


@dataclass(frozen=True, slots=True)
class Hit:
    path: Path
    line: int
    rule: str
    masked: str  # the line, the finding replaced by <rule>

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}: {self.masked[:300]}"


def suite_secrets(sources: Iterable[Path]) -> set[str]:
    """The token and password literals in the test sources."""
    found: set[str] = set()
    for path in sources:
        found.update(m.group(1) for m in _SECRET_LITERAL.finditer(path.read_text()))
    return found


def _en_words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def fixture_sentences() -> list[str]:
    """Transcripts of the recordings the suite streams (and what ASR made of the TTS lines)."""
    out: list[str] = []
    for manifest, columns in (
        (TESTS / "data/speech/MANIFEST.tsv", ("transcript",)),
        (TESTS / "data/tts/MANIFEST.tsv", ("text", "asr_text")),
        (TESTS / "data/tts/lines.tsv", ("text", "asr_text")),
    ):
        if manifest.exists():
            with manifest.open(encoding="utf-8", newline="") as f:
                for row in csv.DictReader(f, delimiter="\t"):
                    out.extend(row[c] for c in columns if row.get(c))
    return out


class LogScanner:
    def __init__(self, secrets: Iterable[str], sentences: Iterable[str]) -> None:
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)
        self._en: set[tuple[str, ...]] = set()
        self._zh: set[str] = set()
        for sentence in sentences:
            words = _en_words(sentence)
            for i in range(len(words) - EN_SHINGLE + 1):
                self._en.add(tuple(words[i : i + EN_SHINGLE]))
            for run in _CJK.findall(sentence):
                for i in range(len(run) - ZH_SHINGLE + 1):
                    self._zh.add(run[i : i + ZH_SHINGLE])

    @classmethod
    def for_suite(cls) -> LogScanner:
        return cls(suite_secrets(sorted(TESTS.glob("*.py"))), fixture_sentences())

    def _spans(self, line: str) -> Iterator[tuple[str, int, int]]:
        for m in _BEARER.finditer(line):
            yield "bearer", m.start(), m.end()
        for m in _QUERY.finditer(line):
            yield "query-secret", m.start(), m.end()
        for secret in self.secrets:
            start = line.find(secret)
            if start >= 0:
                yield "test-secret", start, start + len(secret)
        for m in _PAN.finditer(line):
            if luhn(re.sub(r"\D", "", m.group())):
                yield "pan", m.start(), m.end()
        for pattern in _AUDIO:
            for m in pattern.finditer(line):
                yield "audio", m.start(), m.end()
        yield from self._transcript(line)

    def _transcript(self, line: str) -> Iterator[tuple[str, int, int]]:
        low = line.lower()
        plain = _WORD.findall(low)  # the cheap pass; spans only for a line that matches
        found = [
            i
            for i in range(len(plain) - EN_SHINGLE + 1)
            if tuple(plain[i : i + EN_SHINGLE]) in self._en
        ]
        if found:
            words = list(
                _WORD.finditer(low)
            )  # from the first matching run of words to the end of the last
            yield "transcript", words[found[0]].start(), words[found[-1] + EN_SHINGLE - 1].end()
        for run in _CJK.finditer(line):
            text = run.group()
            if any(text[i : i + ZH_SHINGLE] in self._zh for i in range(len(text) - ZH_SHINGLE + 1)):
                yield "transcript", run.start(), run.end()

    def scan_line(self, line: str) -> tuple[str, str] | None:
        """(rules, the line with every finding masked), or None for a clean line."""
        spans = sorted(self._spans(line), key=lambda s: (s[1], -s[2]))
        if not spans:
            return None
        masked, at = [], 0
        for rule, start, end in spans:
            if start >= at:
                masked.append(line[at:start] + f"<{rule}>")
                at = end
            elif end > at:  # overlapping findings: one mask
                at = end
        masked.append(line[at:])
        rules = ",".join(sorted({rule for rule, _, _ in spans}))
        return rules, "".join(masked).rstrip("\n")

    def scan_file(self, path: Path) -> list[Hit]:
        hits = []
        with path.open(encoding="utf-8", errors="replace") as f:
            for n, line in enumerate(f, 1):
                if found := self.scan_line(line):
                    hits.append(Hit(path, n, *found))
        return hits
