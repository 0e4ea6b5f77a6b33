"""Transcript and phrase text in the form the phrase matcher compares: `normalize`.

This module owns `NormalizedText` and `normalize(text)`: NFKC (full width to half width),
lower case, Traditional to Simplified (`asr.textnorm.to_simplified`, OpenCC), digits spelled
out (English words; Chinese numerals between CJK characters, via `cn2an`), apostrophes
dropped ("I'm" = "im"), every other non-alphanumeric character dropped, filler words (uh,
um) dropped. CJK characters are kept without spaces between them and Latin words are
separated by one space, so a phrase cut in two by the VAD still matches across the cut.
Every normalised character remembers which original character it came from, so a hit can
quote the transcript as spoken, and whether sentence punctuation preceded it (`breaks`).
Pinyin keys and letters (`monitor.qa.pinyin`) are computed once here, for the aligners in
`monitor.qa.textmatch`.

Both sides go through the same function: a script phrase when the script is loaded, each
transcript segment once when it arrives (`monitor.qa.checker`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import cn2an

from asr.textnorm import number_words, to_simplified
from monitor.qa.pinyin import is_cjk, keys_to_letters, pinyin_keys

#: Sentence punctuation: a short phrase is never split by one.
BREAKS = frozenset("，。？！；：、,.?!;:")

_APOSTROPHES = "'’`"
_FILLERS = frozenset({"uh", "um", "uhm", "er", "erm", "ah", "eh", "hmm", "mm"})


@dataclass(frozen=True, slots=True)
class NormalizedText:
    """Matching form of a text. `origin[i]` is the index in `source` of `text[i]`."""

    source: str
    text: str
    origin: tuple[int, ...]
    keys: str  # pinyin keys, same length as `text`
    letters: str  # pinyin letters ("nin hao" -> "ninhao"); other characters as they are
    letter_char: tuple[int, ...]  # per letter: index into `text`
    #: Per character, "1" when the transcript put sentence punctuation just before it
    #: ("一下，您": "0001"); "" when unknown.
    breaks: str = ""

    @classmethod
    def build(cls, source: str, text: str, origin: tuple[int, ...]) -> NormalizedText:
        keys = pinyin_keys(text)
        letters, letter_char = keys_to_letters(keys)
        breaks = "".join(
            "1" if i and any(c in BREAKS for c in source[origin[i - 1] + 1 : origin[i]]) else "0"
            for i in range(len(text))
        )
        return cls(source, text, origin, keys, letters, letter_char, breaks)

    def quote(self, start: int, end: int) -> str:
        """The original text behind normalised characters [start, end)."""
        if start >= end:
            return ""
        return self.source[self.origin[start] : self.origin[end - 1] + 1].strip()


def _is_digit(ch: str) -> bool:
    return unicodedata.normalize("NFKC", ch).isdecimal()


def _spell_digits(run: str, cjk_context: bool) -> str:
    if cjk_context:
        # Long runs (phone, card numbers) are read digit by digit in Chinese transcripts.
        if len(run) > 4:
            return "".join("零一二三四五六七八九"[int(d)] for d in run)
        return str(cn2an.an2cn(run))
    return f" {number_words(int(run))} "


def normalize(text: str) -> NormalizedText:
    """Transcript or phrase text to its matching form (see the module docstring)."""
    simplified = to_simplified(text) if any(is_cjk(c) for c in text) else text
    if len(simplified) != len(text):  # OpenCC phrase tables can change the length
        simplified = "".join(to_simplified(c) or c for c in text)
    chars: list[str] = []
    origin: list[int] = []
    i = 0
    while i < len(simplified):
        ch = unicodedata.normalize("NFKC", simplified[i]).lower()
        if ch.isdecimal():
            j = i
            while j < len(simplified) and _is_digit(simplified[j]):
                j += 1
            # Any script's decimal digits (full width, Arabic-Indic, Gujarati ...) as ASCII:
            # cn2an and the number words only know 0-9.
            run = "".join(
                str(unicodedata.decimal(c, 0))
                for c in unicodedata.normalize("NFKC", simplified[i:j])
            )
            before = simplified[i - 1] if i else ""
            after = simplified[j] if j < len(simplified) else ""
            cjk = is_cjk(before) or is_cjk(after)
            for piece in _spell_digits(run, cjk):
                chars.append(piece)
                origin.append(i)
            i = j
            continue
        for piece in ch:
            if piece in _APOSTROPHES:
                continue
            chars.append(piece if piece.isalnum() else " ")
            origin.append(i)
        i += 1
    return _collapse(text, chars, origin)


def _collapse(source: str, chars: list[str], origin: list[int]) -> NormalizedText:
    """Drop spaces at the ends, next to CJK characters, and repeated spaces."""
    out: list[str] = []
    out_origin: list[int] = []
    for ch, pos in zip(chars, origin, strict=True):
        if ch == " ":
            if not out or out[-1] == " " or is_cjk(out[-1]):
                continue
        elif is_cjk(ch) and out and out[-1] == " ":
            out.pop()
            out_origin.pop()
        out.append(ch)
        out_origin.append(pos)
    while out and out[-1] == " ":
        out.pop()
        out_origin.pop()
    # Hesitations carry no words, and Whisper writes them only now and then.
    words = "".join(out).split(" ")
    keep: list[int] = []
    pos = 0
    for word in words:
        if word not in _FILLERS:
            if keep:
                keep.append(-1)  # the space before this word: origin of its first letter
            keep.extend(range(pos, pos + len(word)))
        pos += len(word) + 1
    chars_kept = []
    origin_kept = []
    for k, index in enumerate(keep):
        if index < 0:
            chars_kept.append(" ")
            origin_kept.append(out_origin[keep[k + 1]])
        else:
            chars_kept.append(out[index])
            origin_kept.append(out_origin[index])
    return NormalizedText.build(source, "".join(chars_kept), tuple(origin_kept))
