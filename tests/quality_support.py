"""Signals for the audio-quality validation: real clips, real noise, known SNR, known turns.

Used by tests/test_quality_*.py and scripts/bench_quality.py. Everything is built from the
real recordings in tests/data/speech (see its README for sources and licences), with fixed
seeds, so the figures are reproducible. Truth is computed from the clean parts before mixing:
SNR via `audio_quality.impair` (P.56 of the clean speech over the noise power, at the rate the
tracker sees), talk spans via a clean-signal oracle (below).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile as sf
from scipy import signal

from audio_quality.conversation import ConversationTracker
from audio_quality.g711 import round_trip
from audio_quality.impair import fit_noise, noise_gain_for_snr, resample, to_int16
from audio_quality.levels import active_speech_level, full_scale
from audio_quality.party import PartyQualityTracker
from audio_quality.records import (
    ActivitySpan,
    ConversationEvent,
    ConversationSummary,
    PartyQualitySummary,
)
from audio_quality.settings import QualitySettings

SPEECH_DIR = Path(__file__).parent / "data" / "speech"

#: Noise recordings (name → file); all real except the documented constructed babble.
NOISES = {
    "dishes": "noise/speechcommands_doing_the_dishes.flac",
    "bike": "noise/speechcommands_exercise_bike.flac",
    "impulsive": "noise/freesound_573577.flac",
    "babble": "noise/babble_constructed_8talkers.flac",
}
MUSIC_ON_HOLD = "noise/moh_macroform-cold_day_30s.flac"

#: Clean wide-band read speech (LJ Speech, ~38 dB intrinsic SNR) and clean telephone prompts
#: (Asterisk, 8 kHz). AISHELL clips are left out of SNR truth: their own background sits only
#: 20–25 dB under the speech.
LJ = [f"en/ljspeech_LJ001-{n:04d}.flac" for n in (1, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15)]
ASTERISK = [
    "en/asterisk_agent-alreadyon.flac", "en/asterisk_agent-incorrect.flac",
    "en/asterisk_agent-user.flac", "en/asterisk_auth-incorrect.flac",
    "en/asterisk_queue-periodic-announce.flac", "en/asterisk_dir-instr.flac",
    "en/asterisk_vm-instructions.flac", "en/asterisk_vm-review.flac",
    "en/asterisk_vm-opts.flac", "en/asterisk_followme_status.flac",
]  # fmt: skip


@functools.lru_cache(maxsize=64)
def _read(rel: str) -> tuple[npt.NDArray[np.float64], int]:
    x, sr = sf.read(SPEECH_DIR / rel, dtype="float64", always_2d=True)
    return np.ascontiguousarray(x[:, 0]) * 32768.0, int(sr)


def load(rel: str, rate: int) -> npt.NDArray[np.float64]:
    """A clip at `rate`, float64 in int16 units (not rounded)."""
    x, sr = _read(rel)
    return resample(x, sr, rate)


def load_noise(name: str, rate: int) -> npt.NDArray[np.float64]:
    """A noise recording at `rate`, high-passed at 50 Hz (4th-order Butterworth, zero
    phase): no telephone path carries sub-audio rumble, and `impulsive` has most of its
    power below 20 Hz (handling bumps), which would otherwise define its "SNR"."""
    x = load(NOISES[name], rate)
    sos = signal.butter(4, 50.0, btype="highpass", fs=rate, output="sos")
    return np.asarray(signal.sosfiltfilt(sos, x))


def speech_track(
    files: Sequence[str], rate: int, seed: int, seconds: float, gap_s: tuple[float, float]
) -> npt.NDArray[np.float64]:
    """Clips one after the other with random pauses (digital silence), like one party's
    channel of a call, cut to `seconds`."""
    rng = np.random.default_rng(seed)
    parts: list[npt.NDArray[np.float64]] = []
    total = 0
    order = rng.permutation(len(files))
    i = 0
    while total < seconds * rate:
        gap = np.zeros(int(rng.uniform(*gap_s) * rate))
        clip = load(files[int(order[i % len(files)])], rate)
        parts += [gap, clip]
        total += gap.size + clip.size
        i += 1
    return np.concatenate(parts)[: int(seconds * rate)]


@dataclass(frozen=True)
class Mix:
    audio: npt.NDArray[np.int16]  # what the tracker is fed
    rate: int
    codec: str
    snr_true_db: float
    clean: npt.NDArray[np.float64]


def mix_at_snr(
    speech: npt.NDArray[np.float64], noise_name: str, snr_db: float, rate: int, codec: str,
    seed: int = 0, headroom: bool = False,
) -> Mix:  # fmt: skip
    """Speech + real noise at a true SNR (P.56 of the clean speech over the noise power, at
    `rate`), then the codec round trip (`PCMU` for the 8 kHz μ-law path). With `headroom`
    the mix is scaled down, speech and noise alike, until its peaks fit the codec's full
    scale: else loud knocks at 0–5 dB SNR are clipped, and the truth counts noise power the
    channel never carried (up to 2.2 dB of it for `impulsive` at 0 dB)."""
    noise_src = load_noise(noise_name, rate)
    offset = int(np.random.default_rng(seed).integers(0, noise_src.size))
    noise = fit_noise(noise_src, speech.size, offset)
    g = noise_gain_for_snr(speech, noise, snr_db, rate)
    mix = speech + g * noise
    if headroom:
        peak = float(np.abs(mix).max()) / (0.98 * full_scale(codec))
        if peak > 1.0:
            mix, speech = mix / peak, speech / peak
    audio = round_trip(to_int16(mix), codec)
    return Mix(audio, rate, codec, snr_db, speech)


def oracle_spans(
    clean: npt.NDArray[np.float64], rate: int, min_silence_ms: int = 250, below_db: float = 35.0
) -> list[tuple[int, int]]:
    """Talk spans (ms) of a clean track: 10 ms frames within `below_db` of the track's P.56
    active level, pauses < `min_silence_ms` bridged (the metric's own definition of a pause).
    This is the ground truth for talk time and dead air; the tracker never sees `clean`."""
    level = active_speech_level(clean, rate).level_dbov
    n = rate // 100
    frames = clean[: clean.size // n * n].reshape(-1, n)
    p = 10 * np.log10(np.maximum((frames**2).mean(axis=1) / 32768.0**2, 1e-15))
    on = p > level - below_db
    spans: list[list[int]] = []
    for k in np.flatnonzero(on).tolist():
        if spans and k - spans[-1][1] < min_silence_ms // 10:
            spans[-1][1] = k + 1
        else:
            spans.append([k, k + 1])
    return [(a * 10, b * 10) for a, b in spans]


@dataclass(frozen=True)
class Turn:
    """One clip in a constructed call: `party` speaks `clip` starting `offset_s` after the
    previous turn's clip ended (negative: overlapping it). With `hold_s` > 0 the call is put
    on hold 1 s after the previous clip for `hold_s`, and the turn follows the hold."""

    party: str
    clip: str
    offset_s: float
    hold_s: float = 0.0


@dataclass(frozen=True)
class Call:
    rate: int
    codec: str
    audio: dict[str, npt.NDArray[np.int16]]  # per party, what the trackers are fed
    clean: dict[str, npt.NDArray[np.float64]]
    holds_ms: list[tuple[int, int]]


def build_call(
    turns: Sequence[Turn], rate: int, codec: str, noise: str | None, snr_db: float,
    seed: int = 0, lead_s: float = 1.0, tail_s: float = 1.0,
) -> Call:  # fmt: skip
    """Place real clips on a two-party timeline; add independent real noise per channel at
    `snr_db` relative to that party's speech (or faint white noise at 45 dB when `noise` is
    None); run the codec. During a hold, music on hold plays on the agent channel (what the
    waiting customer hears) and nobody speaks."""
    rng = np.random.default_rng(seed)
    placed: list[tuple[str, int, npt.NDArray[np.float64]]] = []
    holds_ms: list[tuple[int, int]] = []
    t = int(lead_s * rate)
    for turn in turns:
        clip = load(turn.clip, rate)
        if turn.hold_s > 0:
            h0 = t + rate
            h1 = h0 + int(turn.hold_s * rate)
            holds_ms.append((h0 * 1000 // rate, h1 * 1000 // rate))
            t = h1
        start = max(0, t + int(turn.offset_s * rate))
        placed.append((turn.party, start, clip))
        t = max(t, start + clip.size)
    n = t + int(tail_s * rate)
    clean = {"agent": np.zeros(n), "customer": np.zeros(n)}
    for party, start, clip in placed:
        clean[party][start : start + clip.size] += clip
    moh = load(MUSIC_ON_HOLD, rate) * 0.5
    music = np.zeros(n)
    for h0, h1 in holds_ms:
        a, b = h0 * rate // 1000, h1 * rate // 1000
        music[a:b] = fit_noise(moh, b - a)
    audio: dict[str, npt.NDArray[np.int16]] = {}
    for i, party in enumerate(("agent", "customer")):
        speech = clean[party]
        if noise is None:
            z = rng.standard_normal(n)
            g = noise_gain_for_snr(speech, z, 45.0, rate)
        else:
            z = fit_noise(load_noise(noise, rate), n, int(rng.integers(0, 10**6)) + i * 77_777)
            g = noise_gain_for_snr(speech, z, snr_db, rate)
        mixed = speech + g * z + (music if party == "agent" else 0.0)
        audio[party] = round_trip(to_int16(mixed), codec)
    return Call(rate, codec, audio, clean, holds_ms)


def merge_spans(spans: Sequence[ActivitySpan]) -> list[ActivitySpan]:
    """Join adjacent spans of the same kind (trackers emit speech in pieces as it grows)."""
    out: list[ActivitySpan] = []
    for s in spans:
        if out and out[-1].speech == s.speech and out[-1].end_ms == s.start_ms:
            out[-1] = ActivitySpan(s.party, out[-1].start_ms, s.end_ms, s.speech)
        else:
            out.append(s)
    return out


def oracle_activity(call: Call, party: str, min_silence_ms: int = 250) -> list[ActivitySpan]:
    """The clean-track truth as `ActivitySpan`s tiling the call, for a truth
    `ConversationTracker` fed exactly like the measured one."""
    n_ms = call.clean[party].size * 1000 // call.rate // 10 * 10
    out: list[ActivitySpan] = []
    t = 0
    for a, b in oracle_spans(call.clean[party], call.rate, min_silence_ms):
        if a > t:
            out.append(ActivitySpan(party, t, a, False))
        out.append(ActivitySpan(party, a, min(b, n_ms), True))
        t = min(b, n_ms)
    if t < n_ms:
        out.append(ActivitySpan(party, t, n_ms, False))
    return out


def run_conversation(
    activity: dict[str, list[ActivitySpan]], holds_ms: Sequence[tuple[int, int]],
    settings: QualitySettings,
) -> tuple[list[ConversationEvent], ConversationSummary]:  # fmt: skip
    """Feed both parties' spans in media-time order (as the runtime would, interleaved)
    with the hold hints given at their time; return events and summary."""
    conv = ConversationTracker(settings)
    hints = sorted([(h0, "start") for h0, _ in holds_ms] + [(h1, "end") for _, h1 in holds_ms])
    spans = sorted(activity["agent"] + activity["customer"], key=lambda s: s.end_ms)
    events: list[ConversationEvent] = []
    for sp in spans:
        while hints and hints[0][0] <= sp.end_ms:
            t, kind = hints.pop(0)
            conv.hold_started(t) if kind == "start" else conv.hold_ended(t)
        events += conv.add_activity([sp])
    for t, kind in hints:
        conv.hold_started(t) if kind == "start" else conv.hold_ended(t)
    events += conv.flush()
    return events, conv.finish()


def measure_call(
    call: Call, settings: QualitySettings, chunk_ms: int = 20
) -> tuple[dict[str, list[ActivitySpan]], dict[str, PartyQualitySummary]]:
    """Feed both parties' audio through `PartyQualityTracker`s in `chunk_ms` chunks."""
    activity: dict[str, list[ActivitySpan]] = {}
    summaries: dict[str, PartyQualitySummary] = {}
    step = call.rate * chunk_ms // 1000
    for party, audio in call.audio.items():
        tr = PartyQualityTracker(party, call.rate, call.codec, settings)
        spans: list[ActivitySpan] = []
        # The switch's hold markers, passed on when the audio reaches them (as the runtime).
        marks = sorted(t for hold in call.holds_ms for t in hold)
        for i in range(0, audio.size, step):
            while marks and marks[0] * call.rate // 1000 <= i:
                tr.mark_state_change(marks.pop(0))
            tr.feed(audio[i : i + step])
            spans += tr.take_activity()
        tr.flush()
        spans += tr.take_activity()
        activity[party] = spans
        summaries[party] = tr.finish()
    return activity, summaries


# ---- validation runs shared by the tests and scripts/bench_quality.py ---------------------

PATHS = {"16k": (16000, "L16"), "8k-ulaw": (8000, "PCMU")}
SNRS_DB = (0, 5, 10, 15, 20, 25, 30)


def path_files(path: str) -> list[str]:
    """Clean speech for a path: LJ Speech (wide-band) for 16 kHz; LJ Speech and the Asterisk
    telephone prompts for the 8 kHz μ-law path."""
    return LJ if path == "16k" else LJ[:6] + ASTERISK


def summarise(
    audio: npt.NDArray[np.int16], rate: int, codec: str, settings: QualitySettings
) -> PartyQualitySummary:
    tr = PartyQualityTracker("agent", rate, codec, settings)
    tr.feed(audio)
    tr.flush()
    return tr.finish()


def snr_errors(
    path: str, noise: str, seeds: Sequence[int], settings: QualitySettings,
    seconds: float = 24.0, snrs: Sequence[float] = SNRS_DB,
) -> list[tuple[float, float]]:  # fmt: skip
    """(true SNR, estimate − truth) of the call summary, per seed and SNR. Each seed is one
    party track: clips with 0.8–3 s pauses, like one channel of a call."""
    rate, codec = PATHS[path]
    out: list[tuple[float, float]] = []
    for seed in seeds:
        speech = speech_track(path_files(path), rate, seed, seconds, (0.8, 3.0))
        for snr in snrs:
            mix = mix_at_snr(speech, noise, snr, rate, codec, seed, headroom=True)
            s = summarise(mix.audio, rate, codec, settings)
            est = s.snr_db if s.snr_db is not None else float("nan")
            out.append((snr, est - snr))
    return out


#: A two-party call plan: 13 turns with ordinary gaps (0.4–1.2 s), 3 dead airs (6.5–8 s of
#: planned gap), 3 overlaps (1.5–2 s planned, ≥ 0.9 s of overlapping speech: clear of the
#: 0.5 s threshold, as the dead airs are clear of 5 s), a 20 s hold with music, both voices.
def call_plan(variant: int = 0) -> list[Turn]:
    a = ASTERISK[variant % 3 :] + ASTERISK[: variant % 3]
    c = LJ[variant % 4 :] + LJ[: variant % 4]
    return [
        Turn("agent", a[0], 0.0), Turn("customer", c[0], 0.8), Turn("agent", a[1], -1.5),
        Turn("customer", c[1], 6.5), Turn("agent", a[2], 0.5), Turn("customer", c[2], 1.2),
        Turn("agent", a[3], 7.5), Turn("customer", c[3], -2.0),
        Turn("agent", a[4], 0.6, hold_s=20.0), Turn("customer", c[4], 0.4),
        Turn("agent", a[5], -1.8), Turn("customer", c[5], 8.0), Turn("agent", a[6], 1.0),
    ]  # fmt: skip


@dataclass(frozen=True)
class EventMatch:
    kind: str
    truth: int
    measured: int
    hits: int
    boundary_errors_ms: list[int]


def match_events(
    truth: Sequence[ConversationEvent], measured: Sequence[ConversationEvent], kind: type
) -> EventMatch:
    """Event-level matching: a measured event hits a true one when their IoU is ≥ 0.5."""
    t = [e for e in truth if isinstance(e, kind)]
    m = [e for e in measured if isinstance(e, kind)]
    hits, errs, used = 0, [], set()
    for te in t:
        for i, me in enumerate(m):
            inter = max(0, min(te.end_ms, me.end_ms) - max(te.start_ms, me.start_ms))
            union = max(te.end_ms, me.end_ms) - min(te.start_ms, me.start_ms)
            if i not in used and union and inter / union >= 0.5:
                used.add(i)
                hits += 1
                errs += [me.start_ms - te.start_ms, me.end_ms - te.end_ms]
                break
    return EventMatch(kind.__name__, len(t), len(m), hits, errs)


@dataclass(frozen=True)
class CallResult:
    truth: ConversationSummary
    measured: ConversationSummary
    truth_events: list[ConversationEvent]
    events: list[ConversationEvent]
    holds_ms: list[tuple[int, int]]


def run_call(
    rate: int, codec: str, noise: str | None, snr_db: float, seed: int,
    settings: QualitySettings, variant: int = 0, chunk_ms: int = 20,
) -> CallResult:  # fmt: skip
    call = build_call(call_plan(variant), rate, codec, noise, snr_db, seed)
    activity, _ = measure_call(call, settings, chunk_ms)
    events, summary = run_conversation(activity, call.holds_ms, settings)
    truth_act = {p: oracle_activity(call, p, settings.vad.min_silence_ms) for p in call.clean}
    truth_events, truth = run_conversation(truth_act, call.holds_ms, settings)
    return CallResult(truth, summary, truth_events, events, call.holds_ms)
