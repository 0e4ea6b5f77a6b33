"""Word times for decoded utterances: which texts need them, aligning them, placing them.

Audio redaction (monitor.privacy.audio_redact) masks the stretch of audio where a card number
was said, so it needs to know when each word was said. `align_words` gets that from Whisper's
cross-attention over the encoder output the engine already computed (faster-whisper's
`WhisperModel.find_alignment`, what `transcribe(word_timestamps=True)` uses), one `align`
call per language in a batch. `may_hold_numbers` says which texts are worth it (a digit, a
numeral, a number word, an address), so ordinary speech mostly skips the cost. `place_words`
finds each aligned word in the normalised transcript, giving `WordTiming`s with character
spans in `AsrResult.text`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import ctranslate2
import numpy as np
import numpy.typing as npt
from faster_whisper import WhisperModel
from faster_whisper.tokenizer import Tokenizer

from asr.textnorm import to_simplified
from asr.types import WordTiming

_NUMBERISH = re.compile(
    r"[0-9０-９〇零一二三四五六七八九十百千万幺两@]|\b(?:zero|oh|one|two|three|four|five|six|seven"
    r"|eight|nine|ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen"
    r"|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety|hundred|thousand"
    r"|double|triple|dot)\b",
    re.IGNORECASE,
)
#: A word as aligned: its text (as decoded) and its times from the start of the audio.
RawWord = tuple[str, float, float]
#: What to align: (batch index, tokenizer, text tokens, mel frames of real audio).
AlignItem = tuple[int, Tokenizer, list[int], int]


def may_hold_numbers(text: str) -> bool:
    """Whether `text` has a digit, a numeral, a number word or an address cue: the texts whose
    word times audio redaction may need (a superset of what `monitor.privacy` masks)."""
    return _NUMBERISH.search(text) is not None


def align_words(
    model: WhisperModel,
    encoded: ctranslate2.StorageView,
    mels: npt.NDArray[np.float32],
    items: list[AlignItem],
    reencode: Callable[[npt.NDArray[np.float32]], ctranslate2.StorageView] | None,
) -> dict[int, list[RawWord]]:
    """Word times of decoded texts from the encoder output already computed: one
    `align` per language (the start sequence names it)."""
    groups: dict[str, list[AlignItem]] = {}
    for item in items:
        if item[2]:
            groups.setdefault(item[1].language_code, []).append(item)
    out: dict[int, list[RawWord]] = {}
    for group in groups.values():
        index = [i for i, *_ in group]
        enc = encoded
        if len(index) != mels.shape[0]:
            # The group's rows only: sliced from host memory, or encoded again (`reencode`).
            if reencode is None:
                rows = np.ascontiguousarray(np.asarray(encoded)[index])
                enc = ctranslate2.StorageView.from_array(rows)
            else:
                enc = reencode(mels[index])
        found = model.find_alignment(
            group[0][1],
            [tokens for _, _, tokens, _ in group],
            enc,
            [frames for *_, frames in group],
        )
        for (i, *_), words in zip(group, found, strict=True):
            out[i] = [(w["word"], float(w["start"]), float(w["end"])) for w in words]
    return out


def place_words(
    words: list[RawWord], text: str, simplified: bool, audio_s: float
) -> tuple[WordTiming, ...]:
    """Find each aligned word in the normalised `text`, in order (normalisation keeps the
    order: it only converts characters, removes phantom phrases and tidies spaces). A word
    not found near the cursor (normalisation dropped it) is left out; times are clamped to
    the audio."""
    out: list[WordTiming] = []
    cursor = 0
    for word, start, end in words:
        needle = (to_simplified(word) if simplified else word).strip()
        if not needle:
            continue
        at = text.find(needle, cursor)
        if at < 0 or at - cursor > 2 * len(needle) + 8:
            continue  # dropped or rewritten: the caller falls back to the segment's time
        start = min(max(0.0, start), audio_s)
        out.append(WordTiming(start, min(max(start, end), audio_s), at, at + len(needle)))
        cursor = at + len(needle)
    return tuple(out)
