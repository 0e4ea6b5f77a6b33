"""Call scripts as data, and their rendering into a two-channel call from real recordings.

A script is a TOML file:

    name = "en-billing"
    sample_rate = 16000            # the rate the simulated switch streams at (8000 or 16000)
    [metadata]                     # sent as the first text frame (callid is generated if absent)
    agent = "1024"
    queue = "billing"
    [[turn]]
    party = "customer"             # customer -> channel 0, agent -> channel 1
    audio = "en/ljspeech_LJ001-0001.flac"   # relative to the data root (tests/data/speech)
    pause = 0.8                    # seconds after the previous turn ends (negative = overlap)

IVR legs use three more kinds of turn: `ivr = "prompt"` marks an agent-side clip as an IVR
prompt; `dtmf = "1"` (no audio) is the customer pressing a key (switches carry DTMF out of
band, so it is an event, not audio); `ivr = "hold"` with `seconds = 6` plays the clip (music on
hold) as a queue wait, trimmed to that length, with `queue` naming the queue. These become
`events` of the rendered call, which the simulator sends the way each protocol can (see
`ivr_sim.protocols`).

Rendering loads each clip (any rate, mono), resamples it to the call rate and places it on its
party's channel. Reference transcripts come from the data root's MANIFEST.tsv, so a rendered
call knows what each party said and when (used by tests and the benchmark).
"""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy.signal import resample_poly

PARTY_CHANNEL = {"customer": 0, "agent": 1}
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[1] / "tests" / "data" / "speech"
BUILTIN_SCRIPTS = Path(__file__).resolve().parent / "scripts"


class ScriptError(ValueError):
    """A call script is malformed; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class Turn:
    party: str
    audio: str
    pause_s: float = 0.5
    dtmf: str | None = None
    ivr: str | None = None  # "prompt" | "hold"
    seconds: float | None = None  # trim the clip (hold music)
    queue: str | None = None


@dataclass(frozen=True, slots=True)
class SimEvent:
    """Something the switch reports besides audio, at a media time of the rendered call."""

    at_s: float
    kind: str  # "dtmf", "ivr_prompt", "queue", "hold", "unhold"
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CallScript:
    name: str
    sample_rate: int
    turns: tuple[Turn, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PlacedTurn:
    party: str
    audio: str
    start_s: float
    end_s: float
    transcript: str | None
    language: str | None


@dataclass(frozen=True, slots=True)
class RenderedCall:
    script: CallScript
    audio: npt.NDArray[np.int16]  # shape (frames, 2): channel 0 customer, 1 agent
    turns: tuple[PlacedTurn, ...]
    events: tuple[SimEvent, ...] = ()

    @property
    def sample_rate(self) -> int:
        return self.script.sample_rate

    @property
    def duration_s(self) -> float:
        return float(self.audio.shape[0] / self.sample_rate)

    def pcm(self) -> bytes:
        """Interleaved little-endian L16, as a stereo audio fork sends it."""
        return self.audio.astype("<i2").tobytes()

    def reference(self, party: str) -> str:
        return " ".join(t.transcript or "" for t in self.turns if t.party == party).strip()


def load_script(path: Path | str) -> CallScript:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScriptError(f"{path}: cannot read call script: {exc}") from None
    return script_from_dict(raw, source=str(path))


def script_from_dict(raw: dict[str, Any], source: str = "<script>") -> CallScript:
    rate = raw.get("sample_rate", 8000)
    if rate not in (8000, 16000):
        raise ScriptError(f"{source}: sample_rate must be 8000 or 16000, got {rate!r}")
    turns = []
    for i, t in enumerate(raw.get("turn", [])):
        party = t.get("party")
        if party not in PARTY_CHANNEL:
            raise ScriptError(f"{source}: turn {i}: party must be customer or agent, got {party!r}")
        dtmf = t.get("dtmf")
        if dtmf is not None and not (isinstance(dtmf, str) and len(dtmf) == 1):
            raise ScriptError(f'{source}: turn {i}: dtmf must be one key, e.g. "1"')
        if dtmf is None and not isinstance(t.get("audio"), str):
            raise ScriptError(f"{source}: turn {i}: audio must be a file path")
        if t.get("ivr") not in (None, "prompt", "hold"):
            raise ScriptError(f"{source}: turn {i}: ivr must be prompt or hold")
        turns.append(
            Turn(
                party=party,
                audio=str(t.get("audio", "")),
                pause_s=float(t.get("pause", 0.5)),
                dtmf=dtmf,
                ivr=t.get("ivr"),
                seconds=float(t["seconds"]) if "seconds" in t else None,
                queue=t.get("queue"),
            )
        )
    if not turns:
        raise ScriptError(f"{source}: a call script needs at least one [[turn]]")
    return CallScript(
        name=str(raw.get("name", Path(source).stem)),
        sample_rate=rate,
        turns=tuple(turns),
        metadata=dict(raw.get("metadata", {})),
    )


@cache
def manifest(data_root: Path) -> dict[str, dict[str, str]]:
    path = data_root / "MANIFEST.tsv"
    if not path.exists():
        return {}
    with path.open(encoding="utf-8", newline="") as f:
        return {row["file"]: row for row in csv.DictReader(f, delimiter="\t")}


def load_clip(path: Path, sample_rate: int) -> npt.NDArray[np.int16]:
    """A clip as mono int16 at `sample_rate` (polyphase resampling, scipy)."""
    data, rate = sf.read(str(path), dtype="float64", always_2d=True)
    mono = data.mean(axis=1)
    if rate != sample_rate:
        ratio = Fraction(sample_rate, rate)
        mono = resample_poly(mono, ratio.numerator, ratio.denominator)
    out: npt.NDArray[np.int16] = np.clip(np.rint(mono * 32767.0), -32768, 32767).astype(np.int16)
    return out


def render(script: CallScript, data_root: Path = DEFAULT_DATA_ROOT) -> RenderedCall:
    rate = script.sample_rate
    refs = manifest(data_root)
    clips, placed, cursor = [], [], 0.0
    events: list[SimEvent] = []
    for turn in script.turns:
        start = max(0.0, cursor + turn.pause_s)
        start_frame = int(round(start * rate))
        if turn.dtmf is not None:
            events.append(SimEvent(start_frame / rate, "dtmf", {"digit": turn.dtmf}))
            cursor = max(cursor, start + 0.2)  # a key press lasts about 200 ms
            continue
        path = data_root / turn.audio
        if not path.exists():
            raise ScriptError(f"{script.name}: audio file {path} not found")
        clip = load_clip(path, rate)
        if turn.seconds is not None:
            clip = clip[: int(turn.seconds * rate)]
        end = (start_frame + clip.size) / rate
        if turn.ivr == "prompt":
            # The span rides with the marker (media ms), so the gateway can exclude the
            # prompt from talk time and dead air without waiting for an end marker.
            span = {"start_ms": start_frame * 1000 // rate, "duration_ms": clip.size * 1000 // rate}
            events.append(SimEvent(start_frame / rate, "ivr_prompt", {"prompt": path.stem, **span}))
        elif turn.ivr == "hold":
            queue = {"queue": turn.queue or "default"}
            events.append(SimEvent(start_frame / rate, "queue", queue))
            events.append(SimEvent(start_frame / rate, "hold", queue))
            events.append(SimEvent(end, "unhold", queue))
        clips.append((PARTY_CHANNEL[turn.party], start_frame, clip))
        row = refs.get(turn.audio, {})
        placed.append(
            PlacedTurn(
                turn.party,
                turn.audio,
                start_frame / rate,
                end,
                row.get("transcript"),
                row.get("language"),
            )
        )
        cursor = max(cursor, end)
    tail = int(0.6 * rate)  # let the last utterance close on silence, as a real call would
    audio = np.zeros((int(round(cursor * rate)) + tail, 2), dtype=np.int32)
    for channel, start_frame, clip in clips:
        audio[start_frame : start_frame + clip.size, channel] += clip
    out = np.clip(audio, -32768, 32767).astype(np.int16)
    ordered = tuple(sorted(events, key=lambda e: e.at_s))
    return RenderedCall(script=script, audio=out, turns=tuple(placed), events=ordered)


def from_files(customer: Path | None, agent: Path | None, sample_rate: int = 8000) -> RenderedCall:
    """A call from recordings of each party (any rate; both start at time 0, as recorded).
    A stereo file given as `customer` with no `agent` is split: left customer, right agent."""
    if sample_rate not in (8000, 16000):
        raise ScriptError(f"sample_rate must be 8000 or 16000, got {sample_rate}")
    if customer is None and agent is None:
        raise ScriptError("give a customer and/or an agent recording")
    channels: list[npt.NDArray[np.int16]] = []
    if customer is not None and agent is None and sf.info(str(customer)).channels == 2:
        data, rate = sf.read(str(customer), dtype="float64", always_2d=True)
        for ch in (0, 1):
            ratio = Fraction(sample_rate, rate)
            x = resample_poly(data[:, ch], ratio.numerator, ratio.denominator)
            channels.append(np.clip(np.rint(x * 32767.0), -32768, 32767).astype(np.int16))
    else:
        for path in (customer, agent):
            channels.append(
                load_clip(path, sample_rate) if path is not None else np.zeros(0, np.int16)
            )
    frames = max(c.size for c in channels)
    audio = np.zeros((frames, 2), dtype=np.int16)
    for ch, clip in enumerate(channels):
        audio[: clip.size, ch] = clip
    names = [p.name for p in (customer, agent) if p is not None]
    sources = {"customer": customer or agent, "agent": agent or customer}
    present = [party for ch, party in enumerate(("customer", "agent")) if channels[ch].size]
    script = CallScript(
        name="files:" + "+".join(names),
        sample_rate=sample_rate,
        turns=tuple(Turn(party, str(sources[party]), 0.0) for party in present),
    )
    turns = tuple(
        PlacedTurn(t.party, t.audio, 0.0, frames / sample_rate, None, None) for t in script.turns
    )
    return RenderedCall(script=script, audio=audio, turns=turns)


#: The demo's comfort-noise floor (dBov, RMS re full scale): about what a switch's comfort
#: noise generator fills silence-suppressed stretches with.
DEMO_COMFORT_NOISE_DBOV = -65.0


def with_comfort_noise(call: RenderedCall, level_dbov: float, seed: int = 0) -> RenderedCall:
    """The call with a floor of white noise at `level_dbov` (RMS re 32768) on both channels,
    as a switch's comfort noise fills the pauses (RFC 3389): without it the pauses between
    turns are exact digital zeros, which a real line rarely carries. Seeded: the same call
    and seed give the same audio."""
    if not -120.0 <= level_dbov <= -20.0:
        raise ScriptError(f"comfort noise level must be -120..-20 dBov, got {level_dbov}")
    rng = np.random.default_rng(seed)
    sigma = 32768.0 * 10.0 ** (level_dbov / 20.0)
    noisy = call.audio.astype(np.float64) + rng.normal(0.0, sigma, call.audio.shape)
    audio = np.clip(np.rint(noisy), -32768, 32767).astype(np.int16)
    return replace(call, audio=audio)


def builtin_scripts() -> list[Path]:
    return sorted(BUILTIN_SCRIPTS.glob("*.toml"))
