"""Pinyin forms of text for matching Mandarin through ASR errors (pypinyin).

* `pinyin_keys(text)`: each CJK character replaced by one private-use character standing for
  its toneless syllable, with the initials and finals that small Whisper models and southern
  accents confuse merged (zh/z, ch/c, sh/s, ing/in, eng/en, ang/an). Homophone substitutions
  ("核实" heard as "和时", "验证码" as "宴证码") then compare equal, and since the key string
  has the same length as the text, an alignment on keys is an alignment on characters.
  Other characters are kept as they are.
* `keys_to_letters(keys)`: the syllables' letters, with the character each letter belongs
  to, for near-homophones one letter apart ("稍" shao heard as "收" shou).
* `initials(keys)`: each syllable's initial; small models mishear finals far more often
  than initials (see the faster-whisper transcripts in shared/data/speech/tts).

Syllables come from `lazy_pinyin` one character at a time (its default reading), the same
way for script phrases and transcripts, so both sides always agree.
"""

from __future__ import annotations

import functools

from pypinyin import lazy_pinyin

_PINYIN_BASE = 0xE000  # Unicode private-use area: never in a transcript
_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"))
_FINALS = (("ing", "in"), ("eng", "en"), ("ang", "an"))


def is_cjk(ch: str) -> bool:
    """A CJK ideograph (unified, extension A, compatibility); False for "" and longer text."""
    return len(ch) == 1 and (
        "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf" or "\uf900" <= ch <= "\ufaff"
    )


@functools.lru_cache(maxsize=8192)
def _syllable_key(ch: str) -> str:
    syllable = lazy_pinyin(ch)[0]
    for full, merged in _INITIALS:
        if syllable.startswith(full):
            syllable = merged + syllable[len(full) :]
            break
    for full, merged in _FINALS:
        if syllable.endswith(full):
            syllable = syllable[: -len(full)] + merged
            break
    return _key_for(syllable)


_SYLLABLES: dict[str, str] = {}


def _key_for(syllable: str) -> str:
    # A fixed table that only grows (about 400 syllables): a memo, not shared mutable state
    # that changes any result.
    key = _SYLLABLES.get(syllable)
    if key is None:
        key = chr(_PINYIN_BASE + len(_SYLLABLES))
        _SYLLABLES[syllable] = key
    return key


def keys_to_letters(keys: str) -> tuple[str, tuple[int, ...]]:
    """Pinyin keys back to letters, and for each letter the index of its character."""
    syllables = _syllables_by_key()
    parts: list[str] = []
    index: list[int] = []
    for i, key in enumerate(keys):
        letters = syllables.get(key, key)
        parts.append(letters)
        index.extend([i] * len(letters))
    return "".join(parts), tuple(index)


def _syllables_by_key() -> dict[str, str]:
    if len(_BY_KEY) != len(_SYLLABLES):
        _BY_KEY.update({key: syllable for syllable, key in _SYLLABLES.items()})
    return _BY_KEY


_BY_KEY: dict[str, str] = {}


def initials(keys: str) -> tuple[str, ...]:
    """The initial of each key's syllable ("zh" merged into "z"; "" for a, e, er ...)."""
    syllables = _syllables_by_key()
    out = []
    for key in keys:
        syllable = syllables.get(key)
        if syllable is None:
            out.append(key)
            continue
        n = 0
        while n < len(syllable) and syllable[n] not in "aeiouv":
            n += 1
        out.append(syllable[:n])
    return tuple(out)


def pinyin_keys(text: str) -> str:
    """One key per character: CJK -> its merged toneless syllable, anything else unchanged."""
    return "".join(_syllable_key(ch) if is_cjk(ch) else ch for ch in text)
