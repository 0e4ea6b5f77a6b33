"""Realistic ASR errors injected into exact transcripts, for the text-level compliance suite.

`inject_errors(text, language, cer, rng)` returns `text` damaged to about `cer` character
error rate (Levenshtein distance / reference length, as `evaluation.scoring` counts it), with the
errors small Whisper models make here (see shared/data/speech/tts/README.md, "Checks"):

* Mandarin: homophone substitutions (核实 -> 和时: another character with the same toneless
  pinyin), near-homophones (same initial, one letter of the final off: 信 -> 系, 您 -> 你),
  dropped characters,
  inserted particles (了, 的, 啊), and, for a share of texts, the whole line in Traditional
  characters (Whisper `base` often writes Mandarin that way).
* English: homophone words (bye/by, for/four, your/you're, hold/holed), dropped short words,
  inserted fillers, a misheard letter, words split or merged ("goodbye" -> "good bye").

Deterministic for a given `random.Random`. Never used on the live path.
"""

from __future__ import annotations

import functools
import random

import opencc
from pypinyin import lazy_pinyin
from rapidfuzz.distance import Levenshtein

from monitor.qa.pinyin import is_cjk

# Common characters (the most frequent ~600 in modern Chinese text and customer service
# speech): the pool homophones and insertions are drawn from.
_COMMON = (
    "的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过"
    "家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本"
    "见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己"
    "话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平"
    "真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报"
    "立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务"
    "制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科"
    "怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运"
    "武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸"
    "钱党倒未持音跑投拿星狗兵静始切拉况布房飞团值像罗医谢谈核验证码稍账户您帮查询号余额卡款退"
    "费套餐密码客户热线来电感谢再见祝愉快欢迎致电荣幸效劳需要业务稍候转接挂机确认吗啊吧呀哦嗯"
)
_PARTICLES = "了的啊呢吧嗯哦呀那就这"
_EN_HOMOPHONES = {
    "bye": "by",
    "by": "buy",
    "for": "four",
    "to": "two",
    "too": "to",
    "your": "you're",
    "you're": "your",
    "there": "their",
    "their": "there",
    "here": "hear",
    "hear": "here",
    "no": "know",
    "know": "no",
    "one": "won",
    "right": "write",
    "hold": "holed",
    "whole": "hole",
    "would": "wood",
    "see": "sea",
    "day": "they",
    "calling": "call in",
    "thanks": "thank",
    "thank": "think",
    "goodbye": "good bye",
    "great": "grey",
    "may": "me",
    "it's": "its",
    "its": "it's",
    "we're": "were",
    "we'll": "will",
    "i'll": "all",
}
_EN_FILLERS = ("uh", "um", "the", "a", "so", "and", "yeah")


@functools.cache
def _s2t() -> opencc.OpenCC:
    return opencc.OpenCC("s2t")


@functools.cache
def _homophones() -> dict[str, tuple[str, ...]]:
    by_sound: dict[str, list[str]] = {}
    for ch in dict.fromkeys(_COMMON):
        by_sound.setdefault(lazy_pinyin(ch)[0], []).append(ch)
    return {s: tuple(chars) for s, chars in by_sound.items()}


def _sound_alike(ch: str, rng: random.Random, exact: bool) -> str:
    sound = lazy_pinyin(ch)[0]
    table = _homophones()
    if exact:
        options = [c for c in table.get(sound, ()) if c != ch]
    else:  # same initial, one letter different: xin/xi, nin/ni (shao/shou are two edits
        # apart), as in the faster-whisper transcripts of the TTS set (the initial rarely
        # changes)
        options = [
            c
            for s, chars in table.items()
            if s != sound and s[:1] == sound[:1] and Levenshtein.distance(s, sound) == 1
            for c in chars
        ]
    return rng.choice(options) if options else rng.choice(_COMMON)


def _zh_edit(chars: list[str], rng: random.Random) -> None:
    positions = [i for i, c in enumerate(chars) if is_cjk(c)]
    if not positions:
        return
    i = rng.choice(positions)
    op = rng.random()
    if op < 0.45:
        chars[i] = _sound_alike(chars[i], rng, exact=True)
    elif op < 0.65:
        chars[i] = _sound_alike(chars[i], rng, exact=False)
    elif op < 0.85:
        del chars[i]
    else:
        chars.insert(i, rng.choice(_PARTICLES))


def _en_edit(words: list[str], rng: random.Random) -> None:
    if not words:
        return
    i = rng.randrange(len(words))
    word = words[i]
    bare = word.strip(".,!?").lower()
    op = rng.random()
    if op < 0.35 and bare in _EN_HOMOPHONES:
        words[i] = word.lower().replace(bare, _EN_HOMOPHONES[bare])
    elif op < 0.5 and len(bare) <= 3 and len(words) > 3:
        del words[i]
    elif op < 0.65:
        words.insert(i, rng.choice(_EN_FILLERS))
    elif op < 0.75 and i + 1 < len(words):
        words[i : i + 2] = [words[i] + words[i + 1]]
    else:
        letters = [j for j, c in enumerate(word) if c.isalpha()]
        if letters:
            j = rng.choice(letters)
            words[i] = word[:j] + rng.choice("aeioustnrl") + word[j + 1 :]


def inject_errors(
    text: str, language: str, cer: float, rng: random.Random, traditional_p: float = 0.3
) -> str:
    """`text` with about `cer` of its characters misrecognised (see the module docstring)."""
    if not 0.0 <= cer <= 1.0:
        raise ValueError(f"cer must be between 0 and 1, got {cer}")
    target = round(cer * len(text))
    out = text
    for _ in range(4 * target + 4):
        if Levenshtein.distance(text, out) >= target:
            break
        if language == "zh":
            chars = list(out)
            _zh_edit(chars, rng)
            out = "".join(chars)
        else:
            words = out.split()
            _en_edit(words, rng)
            out = " ".join(words)
    if language == "zh" and rng.random() < traditional_p:
        out = str(_s2t().convert(out))  # script change, not counted as an error
    return out
