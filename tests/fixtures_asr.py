"""ASR fixtures and clip helpers (a pytest plugin registered in tests/conftest.py).

* `asr_cache_dir` - `<repo>/.cache/models` (git-ignored): the bundled `base` model is joined
  there once and reused by later test runs, instead of copying 145 MB per session.
* `asr_settings` - `AsrSettings` for the bundled multilingual `base`, language auto,
  downloads refused (tests never touch a model hub).
* `whisper_engine` - one `WhisperEngine` on those settings, loaded once per test session.
* `reference_batches` - the in-process engine's results for `REFERENCE_BATCHES`, computed
  once and shared by the accuracy tests and the pool test (which must reproduce them).

Helpers: `load_clip(file)` reads a clip of tests/data/speech as 16 kHz mono float32
(resampled with `scipy.signal.resample_poly`), `manifest()` reads MANIFEST.tsv, and
`reference(file)` gives a clip's reference transcript.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from math import gcd
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from asr.engine import WhisperEngine
from asr.settings import AsrSettings
from asr.types import SAMPLE_RATE, AsrRequest, AsrResult

REPO_ROOT = Path(__file__).resolve().parent.parent
SPEECH_DIR = Path(__file__).resolve().parent / "data" / "speech"
MODEL_CACHE_DIR = REPO_ROOT / ".cache" / "models"

# Two mixed-language batches, as the runtime would send utterances from different calls.
# The Mandarin clips were picked because `base` writes them in Traditional characters.
REFERENCE_BATCHES: tuple[tuple[str, ...], ...] = (
    (
        "en/ljspeech_LJ001-0004.flac",
        "zh/aishell1_BAC009S0150W0411.flac",
        "en/asterisk_queue-youarenext.flac",  # 8 kHz telephone prompt, upsampled
    ),
    (
        "zh/aishell1_BAC009S0252W0217.flac",
        "en/ljspeech_LJ001-0011.flac",
        "zh/aishell1_BAC009S0150W0121.flac",
    ),
)


@dataclass(frozen=True, slots=True)
class ManifestRow:
    file: str
    language: str
    sample_rate: int
    seconds: float
    transcript: str


@functools.cache
def manifest() -> dict[str, ManifestRow]:
    """MANIFEST.tsv by file name (read once; the file never changes during a run)."""
    with (SPEECH_DIR / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        return {
            row["file"]: ManifestRow(
                row["file"],
                row["language"],
                int(row["sample_rate"]),
                float(row["seconds"]),
                row["transcript"],
            )
            for row in csv.DictReader(fh, delimiter="\t")
        }


def reference(file: str) -> str:
    return manifest()[file].transcript


def load_clip(file: str) -> npt.NDArray[np.float32]:
    """A clip of tests/data/speech as 16 kHz mono float32 in [-1, 1]."""
    audio, rate = sf.read(SPEECH_DIR / file, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != SAMPLE_RATE:
        g = gcd(rate, SAMPLE_RATE)
        mono = resample_poly(mono, SAMPLE_RATE // g, rate // g)
    return np.ascontiguousarray(mono, dtype=np.float32)


def requests_for(files: tuple[str, ...] | list[str]) -> list[AsrRequest]:
    """One request per clip, tagged with its file name."""
    return [AsrRequest(load_clip(f), tag=f) for f in files]


@pytest.fixture(scope="session")
def asr_cache_dir() -> Path:
    MODEL_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    return MODEL_CACHE_DIR


@pytest.fixture(scope="session")
def asr_settings(asr_cache_dir: Path) -> AsrSettings:
    return AsrSettings(
        model="base",
        language="auto",
        cache_dir=asr_cache_dir,
        offline=True,
        workers=2,
        cpu_threads=1,
    )


@pytest.fixture(scope="session")
def whisper_engine(asr_settings: AsrSettings, asr_cache_dir: Path) -> WhisperEngine:
    return WhisperEngine.from_settings(asr_settings, asr_cache_dir)


@pytest.fixture(scope="session")
def reference_batches(whisper_engine: WhisperEngine) -> list[list[AsrResult]]:
    return [whisper_engine.transcribe_batch(requests_for(b)) for b in REFERENCE_BATCHES]
