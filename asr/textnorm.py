"""Transcript text normalisation: Simplified Chinese, phantom-phrase removal, tidy spacing.

This module owns what happens to Whisper's text after decoding and before it becomes an
`AsrResult`:

* `to_simplified(text)` - Traditional to Simplified Chinese (OpenCC `t2s`); Whisper `base`
  often writes Mandarin in Traditional characters.
* `strip_phantoms(text)` / `is_phantom(text)` - Whisper was trained on subtitled video and,
  given silence, noise or music, invents the credits and sign-offs it saw there ("字幕由
  Amara.org社区提供", "Thanks for watching!"). They never occur in a phone call, so they are
  removed wherever they appear.
* `clean_text(text)` - collapse whitespace, drop spaces Whisper puts between Chinese
  characters, and return "" when no letter or digit is left.
* `normalize_transcript(text, language, simplified)` - the three above, in order.

Scoring normalisation (lower-casing, digit spelling for WER/CER) lives in `evaluation.scoring`:
transcripts keep their case and punctuation for people to read.
"""

from __future__ import annotations

import functools
import re
import unicodedata

import opencc

# Credits and channel sign-offs specific enough to remove wherever they occur, even inside a
# longer line: Chinese output often has no punctuation between them and the real speech.
_SPECIFIC_PHANTOMS = (
    "字幕由Amara.org社区提供",
    "小编字幕由Amara.org社区提供",
    "请不吝点赞 订阅 转发 打赏支持明镜与点点栏目",
    "明镜需要您的支持 欢迎订阅明镜",
    "优优独播剧场——YoYo Television Series Exclusive",
    "中文字幕——Yo Yo Television Series Exclusive",
    "YoYo Television Series Exclusive",
    "字幕by索兰娅",
    "字幕志愿者 杨茜茜",
    "Subtitles by the Amara.org community",
    "Transcription by CastingWords",
    "MING PAO CANADA MING PAO TORONTO",
    "ご視聴ありがとうございました",
)

# Short sign-offs removed only when they make up a whole sentence, so that a caller saying
# "please subscribe me to the newsletter" keeps their words.
_SENTENCE_PHANTOMS = frozenset(
    {
        "thanksforwatching",
        "thankyouforwatching",
        "thankyousomuchforwatching",
        "thanksforwatchingandseeyounexttime",
        "pleasesubscribe",
        "pleasesubscribetomychannel",
        "likeandsubscribe",
        "dontforgettolikeandsubscribe",
        "subtitlesby",
        "谢谢观看",
        "感谢观看",
        "谢谢收看",
        "请订阅我的频道",
        "点赞订阅",
    }
)

# Fragments that mark a whole sentence as a credit line, in the `_skeleton` form.
_SENTENCE_MARKERS = ("amaraorg", "castingwords", "字幕由", "字幕提供", "字幕志愿者", "明镜与点点")

# Sentence ends: Western ones only when followed by space, so "Amara.org" stays whole.
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[。！？\n])")
_CJK = "\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef"
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK}])\s+(?=[{_CJK}])")
_WHITESPACE = re.compile(r"\s+")
# Between the characters of a phantom phrase anything but letters and digits may appear.
_FLEX_GAP = r"[\W_]*"


@functools.cache
def _t2s() -> opencc.OpenCC:
    # Built once per process and never mutated: a memoised constant, not shared state.
    return opencc.OpenCC("t2s")


@functools.cache
def _s2t() -> opencc.OpenCC:
    return opencc.OpenCC("s2t")


def to_simplified(text: str) -> str:
    """Convert Traditional Chinese characters to Simplified; other text is unchanged."""
    # ASCII has nothing to convert, and OpenCC's pure-Python matcher costs ~70 us a call:
    # the compliance checker asks for the same anchor and veto terms thousands of times a
    # call, so the answers are memoised (bounded: a few MB at most).
    if not text or text.isascii():
        return text
    return _to_simplified(text)


# Sized for what recurs: single characters (normalising converts them one by one) and short
# fillers; whole transcripts rarely recur, and a larger cache only fills with them (the L4
# soak's RSS kept rising until 8,192 of them were held).
@functools.lru_cache(maxsize=2048)
def _to_simplified(text: str) -> str:
    return str(_t2s().convert(text))


def _skeleton(text: str) -> str:
    """Lower-case Simplified letters and digits only: the form phantom phrases compare in."""
    text = to_simplified(unicodedata.normalize("NFKC", text)).lower()
    return "".join(ch for ch in text if ch.isalnum())


def _flexible(phrase: str) -> str:
    chars = [re.escape(ch) for ch in phrase if ch.isalnum()]
    body = _FLEX_GAP.join(chars)
    # Latin phrases must start and end on word boundaries; CJK has no spaces to anchor on.
    if phrase[0].isascii():
        body = r"(?<![^\W_])" + body
    if phrase[-1].isascii():
        body += r"(?![^\W_])"
    return body


@functools.cache
def _specific_pattern() -> re.Pattern[str]:
    variants: set[str] = set()
    for phrase in _SPECIFIC_PHANTOMS:
        variants.update({phrase, to_simplified(phrase), str(_s2t().convert(phrase))})
    # Longest first, so "小编字幕由..." wins over its suffix "字幕由...".
    ordered = sorted(variants, key=len, reverse=True)
    return re.compile("|".join(_flexible(p) for p in ordered), re.IGNORECASE)


def strip_phantoms(text: str) -> str:
    """Remove known Whisper phantom phrases; what remains keeps its original characters."""
    text = _specific_pattern().sub(" ", text)
    kept = []
    for sentence in _SENTENCE_SPLIT.split(text):
        skeleton = _skeleton(sentence)
        if skeleton in _SENTENCE_PHANTOMS:
            continue
        if any(marker in skeleton for marker in _SENTENCE_MARKERS):
            continue
        kept.append(sentence)
    return " ".join(kept)


def is_phantom(text: str) -> bool:
    """True when `text` has content but all of it is phantom phrases."""
    return bool(clean_text(text)) and not clean_text(strip_phantoms(text))


def clean_text(text: str) -> str:
    """Collapse whitespace, drop spaces between CJK characters; "" when no letter/digit."""
    text = _WHITESPACE.sub(" ", text).strip()
    text = _SPACE_BETWEEN_CJK.sub("", text)
    if not any(ch.isalnum() for ch in text):
        return ""
    # Separators left dangling where a phantom phrase was cut out ("系统，" -> "系统").
    return text.strip(" ,，、;；:：—")


def normalize_transcript(text: str, language: str, simplified: bool) -> str:
    """Whisper text to transcript text: Simplified (for zh when asked), no phantoms, tidy."""
    if simplified and language == "zh":
        text = to_simplified(text)
    return clean_text(strip_phantoms(text))


# Live as well as for scoring: the compliance matcher spells numbers the way WER does.
ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred"))


def number_words(n: int) -> str:
    """Spell a non-negative integer in English words: 1455 -> "one thousand four hundred
    fifty five" (no "and", no hyphens; 10**12 and more are read digit by digit)."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if n >= 10**12:  # account and card numbers: read digit by digit
        return " ".join(ONES[int(d)] for d in str(n))
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f" {ONES[ones]}" if ones else "")
    for scale, word in _SCALES:
        if n >= scale:
            head, rest = divmod(n, scale)
            tail = f" {number_words(rest)}" if rest else ""
            return f"{number_words(head)} {word}{tail}"
    raise AssertionError(f"no scale for {n}")  # unreachable: every n >= 100 has one
