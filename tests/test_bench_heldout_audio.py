"""The held-out bench's audio: natural-voice renders (scripts/tts_render.py, run in its own
venv by scripts/render-heldout), their cache and checks, how the bench picks them up
(scripts/heldout_audio.py) and how it reports what the ASR heard.

The per-commit tests need no TTS venv: the renderer's check and cache run on real recorded
speech with the engine seam stubbed, and the bench's side reads a render folder laid out as
the renderer writes it. `test_render_heldout_speaks_both_languages_intelligibly` (long)
runs the real renderer, which sets up its venv on first use, and the real Whisper `base`.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from math import gcd
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from asr.engine import WhisperEngine
from asr.types import SAMPLE_RATE, AsrRequest
from evaluation.evalset import CallPlan, Line, PlannedTurn, load_lines
from evaluation.scoring import cer, wer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bench_compliance_offline  # noqa: E402
import heldout_audio  # noqa: E402
import tts_render  # noqa: E402

SPEECH = REPO / "tests" / "data" / "speech"
EN_CLIP = "en/ljspeech_LJ001-0004.flac"
ZH_CLIP = "zh/aishell1_BAC009S0150W0121.flac"


def transcript(file: str) -> str:
    with (SPEECH / "MANIFEST.tsv").open(encoding="utf-8", newline="") as fh:
        return next(
            r["transcript"] for r in csv.DictReader(fh, delimiter="\t") if r["file"] == file
        )


def clip(file: str) -> tuple[np.ndarray, int]:
    audio, rate = sf.read(SPEECH / file, dtype="float32")
    return audio, rate


# -- the renderer (no engines needed) ---------------------------------------------------------
def test_render_check_accepts_speech_and_rejects_silence_or_a_truncated_line() -> None:
    for file, lang in ((EN_CLIP, "en"), (ZH_CLIP, "zh")):
        audio, rate = clip(file)
        assert tts_render.check(audio, rate, lang, transcript(file))["ok"], file
    audio, rate = clip(EN_CLIP)
    silent = tts_render.check(np.zeros_like(audio), rate, "en", transcript(EN_CLIP))
    assert not silent["ok"] and "silent" in silent["problems"][0]
    # A tenth of a second for a whole sentence: the engine spoke almost nothing.
    short = tts_render.check(audio[: rate // 10], rate, "en", transcript(EN_CLIP))
    assert not short["ok"] and "characters per second" in short["problems"][0]
    # The pace is taken over the voiced span: a second of the engine's silence around the
    # line does not make it too slow, and a whole sentence is not too fast for its lead-in.
    pad = np.zeros(rate, dtype=audio.dtype)
    padded = tts_render.check(np.concatenate([pad, audio, pad]), rate, "en", transcript(EN_CLIP))
    assert (
        padded["ok"]
        and padded["chars_per_s"]
        == tts_render.check(audio, rate, "en", transcript(EN_CLIP))["chars_per_s"]
    )


class ClipEngines:
    """The engine seam: a recorded clip per language instead of a synthesiser."""

    def __init__(self, silent: bool = False) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.silent = silent

    def speak(self, language: str, role: str, text: str) -> tuple[np.ndarray, int]:
        self.calls.append((language, role, text))
        audio, rate = clip(EN_CLIP if language == "en" else ZH_CLIP)
        return (np.zeros_like(audio) if self.silent else audio), rate


def test_renders_are_cached_by_text_and_voice_and_a_failed_one_is_not_written(
    tmp_path: Path,
) -> None:
    row = {"file": "heldout/en/x_01", "language": "en", "role": "agent"}
    row["text"] = transcript(EN_CLIP)
    engines: Any = ClipEngines()
    first = tts_render.render_line(engines, row, tmp_path)
    assert first["ok"] and first["rendered"] and first["voice"] == "piper-joe-medium"
    wav = tmp_path / "heldout/en/x_01.wav"
    written, rate = sf.read(wav, dtype="float32")
    assert rate == 22050 and abs(np.max(np.abs(written)) - tts_render.PEAK) < 0.01
    assert not tts_render.render_line(engines, row, tmp_path)["rendered"]  # cached
    assert len(engines.calls) == 1
    # Another voice (the customer's) or another text renders again.
    assert tts_render.render_line(engines, {**row, "role": "customer"}, tmp_path)["rendered"]
    assert tts_render.render_line(engines, {**row, "text": row["text"] + " Now."}, tmp_path)[
        "rendered"
    ]
    assert len(engines.calls) == 3
    bad = tts_render.render_line(ClipEngines(silent=True), {**row, "file": "x/y"}, tmp_path)  # type: ignore[arg-type]
    assert not bad["ok"] and not (tmp_path / "x/y.wav").exists()


# -- the bench's side --------------------------------------------------------------------------
def heldout_two() -> list[Line]:
    held = load_lines(REPO / "tests" / "data" / "tts" / "heldout.tsv")
    return [next(x for x in held if x.language == lang) for lang in ("en", "zh")]


def lay_out(root: Path, lines: list[Line], ok: bool = True) -> None:
    """A render folder as scripts/tts_render.py writes it (recorded speech for the audio)."""
    for line in lines:
        wav = root / "natural" / f"{line.file}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        audio, rate = clip(EN_CLIP if line.language == "en" else ZH_CLIP)
        sf.write(wav, audio, rate)
        meta = {"file": line.file, "text": line.text, "ok": ok}
        wav.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")


@pytest.fixture
def no_renderer(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The renderer subprocess (it needs the TTS venv) replaced by the folder laid out."""
    seen: list[Path] = []
    monkeypatch.setattr(heldout_audio, "render_natural", lambda root, tsvs: seen.append(root))
    return seen


def test_the_bench_plays_the_natural_renders_and_keeps_the_context_lines(
    tmp_path: Path, no_renderer: list[Path]
) -> None:
    held = heldout_two()
    context = Line("en/a_neutral_01.flac", "tts", "en", "agent", "neutral", "x", "x", 2.0)
    lay_out(tmp_path, held)
    out = heldout_audio.heldout_audio([*held, context], tmp_path, "natural")
    assert no_renderer == [tmp_path / "natural"]
    assert out[2] == context
    for line, src in zip(out[:2], (EN_CLIP, ZH_CLIP), strict=True):
        assert Path(line.file).is_absolute() and Path(line.file).exists()
        assert line.seconds == pytest.approx(sf.info(SPEECH / src).duration, abs=0.01)
        assert line.stages or line.forbidden or line.category == "near_miss"


@pytest.mark.parametrize("fault", ["missing", "stale", "failed", "silent"])
def test_a_held_out_line_without_a_usable_render_stops_the_bench(
    tmp_path: Path, no_renderer: list[Path], fault: str
) -> None:
    held = heldout_two()
    lay_out(tmp_path, held, ok=fault != "failed")
    wav = tmp_path / "natural" / f"{held[1].file}.wav"
    if fault == "missing":
        wav.unlink()
    elif fault == "stale":
        meta = wav.with_suffix(".json")
        meta.write_text(json.dumps({"text": "另一句话", "ok": True}), encoding="utf-8")
    elif fault == "silent":
        sf.write(wav, np.zeros(16000, dtype=np.float32), 16000)
    with pytest.raises(heldout_audio.RenderError, match=held[1].file.split("/")[-1]):
        heldout_audio.heldout_audio(held, tmp_path, "natural")


def test_the_bench_finds_each_held_out_clip_the_asr_heard_whole(
    tmp_path: Path, no_renderer: list[Path]
) -> None:
    """After `heldout_audio` the lines name their clips by absolute path: they must still be
    known as held-out lines, or the bench silently reports nothing about the ASR."""
    held = heldout_two()
    lay_out(tmp_path, held)
    en = heldout_audio.heldout_audio(held, tmp_path, "natural")[0]
    assert heldout_audio.is_heldout(en) and Path(en.file).is_absolute()
    context = Line("en/a_neutral_01.flac", "tts", "en", "agent", "neutral", "x", "x", 2.0)
    plan = CallPlan(
        "en-000",
        "en",
        (PlannedTurn("agent", en, 0.5), PlannedTurn("agent", context, 1.0)),
        frozenset(en.stages),
        frozenset(),
        frozenset(),
        "",
    )
    end = int((0.5 + en.seconds) * 1000)
    heard_whole = bench_compliance_offline.Segment("agent", 450, end + 100, "heard", "en")
    half = bench_compliance_offline.Segment("agent", 450, end // 2, "half", "en")
    context_seg = bench_compliance_offline.Segment("agent", end + 1000, end + 3000, "x", "en")
    heard = bench_compliance_offline.heldout_heard([plan], [[heard_whole, half, context_seg]])
    assert heard == [heldout_audio.Heard(en.file, "en", en.text, "heard", "en")]


def test_asr_report_counts_errors_and_languages_per_clip() -> None:
    heard = [
        heldout_audio.Heard("h/en/a", "en", "thank you for calling", "thank you for calling", "en"),
        heldout_audio.Heard("h/en/a", "en", "thank you for calling", "thank you", "en"),  # again
        heldout_audio.Heard("h/en/b", "en", "please hold", "please hold the line now", "en"),
        heldout_audio.Heard("h/zh/a", "zh", "请您稍等", "請您稍等", "zh"),  # Traditional = same
        heldout_audio.Heard("h/zh/b", "zh", "请您稍等", "please wait", "en"),
    ]
    text, figures = heldout_audio.asr_report(heard, worst=0)
    assert figures["en"] == {
        "clips": 2,
        "metric": "WER",
        "mean": 0.75,  # 0 and 3 insertions / 2 words = 1.5
        "median": 0.75,
        "over_0_3": 1,
        "other_language": 0,
    }
    zh = figures["zh"]
    assert isinstance(zh, dict)
    assert (zh["clips"], zh["mean"], zh["over_0_3"], zh["other_language"]) == (
        2,
        1.25,
        1,
        1,
    )  # 10 letters for 4 characters: 2.5
    assert "please hold the line" not in text  # the held-out texts are shown only if asked
    assert "please hold the line" in heldout_audio.asr_report(heard, worst=3)[0]


# -- the real renderer and the real ASR (long: the TTS venv, ~1.6 GB on first use) -------------
LINES = [
    ("t/en/agent", "en", "agent", "Thank you for calling, my name is Anna, how can I help you?"),
    ("t/en/customer", "en", "customer", "I would like to check the balance of my account."),
    ("t/zh/agent", "zh", "agent", "您好，很高兴为您服务，请问有什么可以帮您？"),
    ("t/zh/customer", "zh", "customer", "我想查一下我这个月的话费。"),
]


def to_16k(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    g = gcd(rate, SAMPLE_RATE)
    return np.ascontiguousarray(resample_poly(audio, SAMPLE_RATE // g, rate // g), np.float32)


@pytest.mark.long
def test_render_heldout_speaks_both_languages_intelligibly(
    tmp_path: Path, whisper_engine: WhisperEngine
) -> None:
    tsv = tmp_path / "lines.tsv"
    # A comment line first, as the labelled files may have (heldout_round4.tsv does).
    rows = ["# lines for this test", "file\tlanguage\trole\ttext"] + ["\t".join(x) for x in LINES]
    tsv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "renders"

    def render() -> list[dict[str, Any]]:
        done = subprocess.run(
            [str(REPO / "scripts" / "render-heldout"), str(out), str(tsv)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]

    first = render()
    assert [r["file"] for r in first] == [x[0] for x in LINES]
    assert all(r["ok"] and r["rendered"] for r in first)
    assert {r["voice"] for r in first} == set(tts_render.VOICES.values())
    assert not any(r["rendered"] for r in render())  # the cache holds them all

    results = whisper_engine.transcribe_batch(
        [AsrRequest(to_16k(out / f"{f}.wav"), tag=f) for f, *_ in LINES]
    )
    for (file, lang, _, text), result in zip(LINES, results, strict=True):
        rate = (wer if lang == "en" else cer)(text, result.text)
        assert result.language == lang and rate < 0.3, (file, result.text)
