"""Speech/silence per 10 ms frame for metrics (the metric VAD), streaming and chunk-invariant.

Owns one party's speech/silence decision. Not the ASR segmenter: its settings
(`MetricVadSettings`) favour tight boundaries over generous context.

Per 10 ms frame (aligned to absolute media time), from the 30 ms window ending with it
(`frame_features.analyse_frames`): the power in the 200–3800 Hz speech band and the
periodicity in the pitch range. Then:
1. the band power is smoothed by a one-pole filter (`smoothing_ms`);
2. the noise floor is the median smoothed power of the last `noise_window_ms` worth of
   frames *decided as silence*, re-estimated every 100 ms. Speech frames never enter it, so
   a long monologue does not raise it (a plain sliding minimum or quantile over all frames
   does, and then eats the ends of long turns); the median, not a low quantile, because the
   loudest noise frames tend to be absorbed into speech and a low quantile of the rest
   would drift down. Until one second of silence has been decided it is the
   `floor_quantile` of all recent frames;
3. a frame is *loud* (level 2) `threshold_db` above the floor and *audible* (level 1)
   `continue_db` above it (hysteresis), in both cases also above `min_level_dbov`;
4. a small state machine over runs of frames makes speech stretches: a stretch opens on a
   loud frame, goes on through audible ones, bridges pauses shorter than `min_silence_ms`, is
   confirmed once it lasts `min_speech_ms` with at least `min_voiced_ms` and
   `min_voiced_ratio` of its frames voiced (voiced: periodic in the pitch range with most
   energy below 1 kHz; clatter, thumps, clicks and ringing cutlery are loud but not that),
   is given up as noise after `max_unvoiced_ms` (keeping its last 0.5 s under judgement) and
   dropped by a 100 ms pause before it is confirmed; it ends after `min_silence_ms` of quiet
   or `max_unvoiced_ms` without voicing, at most 200 ms after its last voiced frame, and
   gets `pad_ms` on both sides;
5. noise compensation (`noise_adapt`): pauses are bridged longer and stretch ends extended
   by as much of the speech's faint range as the noise hides; a pause bridged only thanks
   to this counts as talk once the sound after it is confirmed as speech (like a new
   stretch), so background talkers do not keep a turn going. Nothing changes on clean lines;
6. speech-like noise (`noise_adapt`): under background talkers, once the party's speech is
   well above them, only loud voiced frames count as its voicing;
7. switch markers (`cut_at`): no stretch runs across a hold or IVR-prompt edge.

Step 4 needs look-ahead, so decisions become *final* a bounded time after the audio (at most
`max_unvoiced_ms` + `min_silence_ms` + the bridging of step 5 + `pad_ms`). Work is vectorised
per block of frames; the Python loops are per 100 ms floor step and per run (a few per
second). Memory: four windows of 400 floats and the undecided frames.

Weak spots of any energy-and-voicing VAD: background talkers (babble), TV and music are
speech to it (step 6 only keeps them from stretching the party's turns; talkers that swell
before the party first speaks are taken for the party); at 0–5 dB SNR quiet syllables fall
under the threshold (talk time under-counted, less so with step 5); babble fills bridged
pauses, so there step 5 can over-count; voiced noise that starts mid-call and never stops
keeps the floor where it was.
"""

from __future__ import annotations

import bisect
import enum
import math

import numpy as np
import numpy.typing as npt
from scipy import signal

from audio_quality.frame_features import HISTORY_SAMPLES, Ring, analyse_frames
from audio_quality.noise_adapt import NoiseAdaptation
from audio_quality.settings import MetricVadSettings

FRAME_MS = 10
#: The floor is re-estimated every this many frames (100 ms).
FLOOR_STEP = 10
#: Unvoiced frames that may end a stretch (200 ms: the longest final fricatives).
_UNVOICED_TAIL_FRAMES = 20
#: A pause this long (100 ms) drops a candidate that is not confirmed yet.
_CANDIDATE_GAP_FRAMES = 10
#: A given-up candidate keeps its last 500 ms under judgement.
_RESTART_FRAMES = 50
#: Silence frames seen before the floor comes from silence only (1 s).
_BOOTSTRAP_FRAMES = 100
#: Switch markers (`cut_at`) waiting for the audio to reach them; more are ignored.
_MAX_PENDING_CUTS = 32


#: A run of final frames: (start_frame, end_frame, speech), end exclusive.
Run = tuple[int, int, bool]


class _State(enum.Enum):
    SILENCE = "silence"
    CANDIDATE = "candidate"  # loud frames seen, not yet confirmed as speech
    SPEECH = "speech"


class MetricVad:
    """One party's frame decisions. Frame k covers media time [10k, 10k+10) ms."""

    __slots__ = (
        "_fs2", "_alpha", "_zi", "_vhist", "_all", "_noise", "_floor", "_quantile",
        "_threshold_db", "_continue_db", "_min_level_db", "_gap", "_min_speech", "_pad",
        "_voiced_level", "_voiced_ratio", "_max_candidate", "_min_voiced", "_cand_gap",
        "_state", "_pos", "_fin", "_seg_start", "_last_end", "_last_voiced", "_cand_frames",
        "_cand_voiced", "_undecided", "_und_code", "_restart", "_adapt", "_bridge", "_tail",
        "_speech_like", "_resume", "_cuts",
    )  # fmt: skip

    def __init__(self, settings: MetricVadSettings, full_scale: float) -> None:
        self._fs2 = full_scale * full_scale
        self._alpha = (
            math.exp(-FRAME_MS / settings.smoothing_ms) if settings.smoothing_ms > 0 else 0.0
        )
        self._zi = np.zeros(1, dtype=np.float64)
        self._vhist = np.zeros(HISTORY_SAMPLES, dtype=np.float64)
        window = settings.noise_window_ms // FRAME_MS
        self._all = Ring(window)  # every recent frame (bootstrap only)
        self._noise = Ring(window)  # recent frames decided as silence
        self._cuts: list[int] = []  # frames where the call changed state (`cut_at`), sorted
        self._floor = math.inf
        self._quantile = settings.floor_quantile
        self._threshold_db = settings.threshold_db
        self._continue_db = settings.continue_db
        self._min_level_db = settings.min_level_dbov
        self._gap = settings.min_silence_ms // FRAME_MS
        self._min_speech = -(-settings.min_speech_ms // FRAME_MS)
        self._pad = settings.pad_ms // FRAME_MS
        self._voiced_level = settings.voicing_threshold
        self._voiced_ratio = settings.min_voiced_ratio
        self._max_candidate = settings.max_unvoiced_ms // FRAME_MS
        self._min_voiced = -(-settings.min_voiced_ms // FRAME_MS)
        self._cand_gap = min(self._gap, _CANDIDATE_GAP_FRAMES)
        self._state = _State.SILENCE
        self._pos = 0  # frames seen
        self._fin = 0  # frames decided (final)
        self._seg_start = 0
        self._last_end = 0  # end of the last audible frame of the stretch
        self._last_voiced = 0  # end of its last voiced frame
        self._cand_frames = 0  # loud frames in the candidate ...
        self._cand_voiced = 0  # ... and how many of them were voiced
        # Frames fin..pos: smoothed dB (for the floor once decided) and level*2+voiced.
        self._undecided = np.empty(0, dtype=np.float64)
        self._und_code = np.empty(0, dtype=np.int8)
        self._restart = min(_RESTART_FRAMES, self._max_candidate - 1)
        self._adapt = NoiseAdaptation(settings)
        self._bridge = self._tail = 0  # extra frames in force (`noise_adapt`)
        self._speech_like = False
        # While speech after a compensation-bridged pause is judged: where the stretch
        # before the pause ends if it is not confirmed.
        self._resume: int | None = None

    @property
    def frames_seen(self) -> int:
        return self._pos

    @property
    def frames_final(self) -> int:
        return self._fin

    def process(
        self, frames: npt.NDArray[np.int16]
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.float64], list[Run]]:
        """Feed consecutive frames `(n, frame_len)` int16. Returns per frame the raw flags
        (audible: possibly speech), the voicing flags and the noise floor (speech band,
        dBov), and the runs that became final."""
        n = frames.shape[0]
        if n == 0:
            none = np.zeros(0, dtype=np.bool_)
            return none, none, np.zeros(0), []
        band, periodic, self._vhist = analyse_frames(frames, self._vhist)
        lin = band / self._fs2
        if self._alpha > 0.0:
            a = self._alpha
            smooth, self._zi = signal.lfilter([1.0 - a], [1.0, -a], lin, zi=self._zi)
        else:
            smooth = lin
        smooth_db = 10.0 * np.log10(np.maximum(smooth, 1e-15))
        voiced = periodic >= self._voiced_level
        floor = np.empty(n, dtype=np.float64)
        raw = np.empty(n, dtype=np.bool_)
        out: list[Run] = []
        i = 0
        while i < n:
            # Every cut due here (two markers at one frame, e.g. unhold then hold): one left
            # behind would make an empty step below.
            while self._cuts and self._cuts[0] <= self._pos:
                self._cuts.pop(0)
                self._cut(out)
            # One floor step at a time: the floor only changes at step boundaries and only
            # from frames decided before them, whatever the chunking.
            if self._pos % FLOOR_STEP == 0:
                self._floor = self._estimate_floor()
                adapt = self._adapt.at_floor(self._floor)
                self._bridge, self._tail = adapt.bridge, adapt.tail
                self._speech_like = adapt.speech_like
            j = min(n, i + FLOOR_STEP - self._pos % FLOOR_STEP)
            if self._cuts:
                j = min(j, i + self._cuts[0] - self._pos)
            floor[i:j] = self._floor
            raw[i:j] = self._segment(smooth_db[i:j], voiced[i:j], out)
            i = j
        return raw, voiced, floor, out

    def cut_at(self, frame: int) -> None:
        """The call changed state at `frame` (the switch put it on hold or took it off):
        no stretch runs across it, so music on hold neither starts before the hold nor runs
        into the party's next turn. Applied when the audio reaches `frame` (at once if it
        already has), so the decisions do not depend on when the marker came in."""
        if len(self._cuts) < _MAX_PENDING_CUTS:  # a flood of markers must not grow memory
            bisect.insort(self._cuts, max(frame, self._pos))

    def _cut(self, out: list[Run]) -> None:
        """End what is going on: a stretch at its end, a candidate as silence."""
        if self._state is _State.SPEECH:
            self._final(min(self._speech_end() + self._pad + self._tail, self._pos), True, out)
        self._close_resume(out)
        self._final(self._pos, False, out)
        self._state = _State.SILENCE

    def finish(self) -> list[Run]:
        """End of audio: decide everything still pending."""
        out: list[Run] = []
        self._cut(out)
        self._cuts.clear()
        return out

    def _estimate_floor(self) -> float:
        if self._noise.count >= _BOOTSTRAP_FRAMES:
            # The median of what was decided silence: a low quantile of it would drift down,
            # because the loudest noise frames tend to be absorbed into speech stretches.
            return self._noise.quantile(0.5)
        return self._all.quantile(self._quantile)

    def _segment(
        self, db: npt.NDArray[np.float64], voiced: npt.NDArray[np.bool_], out: list[Run]
    ) -> npt.NDArray[np.bool_]:
        audible = db > self._min_level_db
        # 2: loud enough to start speech; 1: loud enough to continue it; 0: neither.
        level = (audible & (db > self._floor + self._continue_db)).astype(np.int8) + (
            audible & (db > self._floor + self._threshold_db)
        ).astype(np.int8)
        self._all.push(db)
        self._undecided = np.concatenate([self._undecided, db])
        quiet = level == 0
        self._adapt.quiet_frames(voiced[quiet])
        if self._speech_like:
            # The noise itself is voiced (background talkers): voicing near the floor is no
            # evidence of this party's speech, only loud voiced frames are.
            voiced = voiced & (level == 2)
        code = level * 2 + voiced.astype(np.int8)
        self._und_code = np.concatenate([self._und_code, code])
        edges = np.flatnonzero(np.diff(code)) + 1
        starts = np.concatenate([[0], edges]).tolist()
        ends = np.concatenate([edges, [code.size]]).tolist()
        for s, e in zip(starts, ends, strict=True):
            c = int(code[s])
            self._run(c >> 1, bool(c & 1), e - s, out)
        return np.asarray(level > 0, dtype=np.bool_)

    def _final(self, end: int, speech: bool, out: list[Run]) -> None:
        if end <= self._fin:
            return
        k = end - self._fin
        decided, self._undecided = self._undecided[:k], self._undecided[k:]
        codes, self._und_code = self._und_code[:k], self._und_code[k:]
        if not speech:
            self._noise.push(decided)
        else:
            self._adapt.speech_frames(decided[codes >= 2])
        if out and out[-1][1] == self._fin and out[-1][2] == speech:
            out[-1] = (out[-1][0], end, speech)
        else:
            out.append((self._fin, end, speech))
        self._fin = end

    def _speech_end(self) -> int:
        """Where a stretch that is closing ends: its last audible frame, but at most
        `_UNVOICED_TAIL_FRAMES` after its last voiced one (a final "s" or "t" is speech;
        the clatter that follows a sentence is not)."""
        return min(self._last_end, self._last_voiced + _UNVOICED_TAIL_FRAMES)

    def _speech_end_padded(self) -> int:
        """A closing stretch's end with its pad and the noise-compensation tail, short of
        the lead-in the next stretch may claim."""
        return min(self._speech_end() + self._pad + self._tail, self._pos - self._pad)

    def _close_resume(self, out: list[Run]) -> None:
        """The sound after a bridged pause was not speech: the stretch before it ends."""
        if self._resume is not None:
            self._final(self._resume, True, out)
            self._resume = None

    def _give_up(self, out: list[Run]) -> None:
        """Loud for `max_unvoiced_ms` but not voiced enough: noise (clatter, thumps). Decide
        all but its last `_RESTART_FRAMES` as silence and judge those afresh: speech that
        starts right after a noise burst must not go down with it (it would also land in the
        noise estimate)."""
        start = self._pos - self._restart
        self._final(start - self._pad, False, out)
        tail = self._und_code[start - self._fin :]
        voiced = (tail >= 2) & (tail % 2 == 1)  # audible and voiced
        self._seg_start = start
        self._cand_frames = int((voiced | (tail >= 4)).sum())
        self._cand_voiced = int(voiced.sum())
        voiced_at = np.flatnonzero(voiced)
        self._last_voiced = start + int(voiced_at[-1]) + 1 if voiced_at.size else start
        self._last_end = self._pos

    def _run(self, level: int, voiced: bool, n: int, out: list[Run]) -> None:
        """A run of `n` frames with the same level and voicing. Each step consumes the frames
        up to the next state change exactly, so the outcome never depends on how runs were
        split by chunking."""
        while n > 0:
            n -= self._step(level, voiced, n, out)

    def _step(self, level: int, voiced: bool, n: int, out: list[Run]) -> int:
        start = self._pos
        if self._state is _State.SILENCE:
            if level == 2:  # only a loud frame opens a candidate (hysteresis)
                self._state, self._seg_start = _State.CANDIDATE, start
                self._cand_frames = self._cand_voiced = 0
                self._last_end = self._last_voiced = start
                return 0
            self._pos += n
            # Keep `pad` frames open: speech starting next would claim them as its lead-in.
            self._final(self._pos - self._pad, False, out)
            return n
        if level == 0:  # a pause: bridged unless it reaches min_silence
            # An unconfirmed candidate gets a shorter pause: a clink or knock just before
            # speech must not be bridged into it (that would move the onset early).
            gap = self._gap + self._bridge if self._state is _State.SPEECH else self._cand_gap
            k = self._last_end + gap - start
            if k > n:
                self._pos += n
                return n
            self._pos += k
            if self._state is _State.SPEECH:
                self._final(self._speech_end_padded(), True, out)
            self._close_resume(out)
            self._state = _State.SILENCE
            self._final(self._pos - self._pad, False, out)
            return k
        if self._state is _State.CANDIDATE:
            # First frame of the run at which the candidate is confirmed or given up.
            k_arr = np.arange(1, n + 1)
            span = start + k_arr - self._seg_start
            # Evidence counts voiced frames and loud ones; merely audible unvoiced frames
            # (often noise that rose above the floor) neither help nor dilute it.
            counted = voiced or level == 2
            frames = self._cand_frames + (k_arr if counted else 0)
            vc = self._cand_voiced + (k_arr if voiced else 0)
            confirm = (span >= self._min_speech) & (vc >= self._min_voiced)
            confirm &= vc >= self._voiced_ratio * frames
            hit = confirm | (span >= self._max_candidate)
            k = int(np.argmax(hit)) + 1 if hit.any() else n
            self._pos += k
            self._cand_frames += k if counted else 0
            self._cand_voiced += k if voiced else 0
            self._last_end = self._pos
            if voiced:
                self._last_voiced = self._pos
            if confirm[k - 1]:
                self._state = _State.SPEECH
                if self._resume is None:
                    self._final(max(0, self._seg_start - self._pad), False, out)
                self._resume = None  # confirmed after a bridged pause: the pause is talk
                self._final(self._last_voiced, True, out)
            elif hit[k - 1]:
                self._close_resume(out)
                self._give_up(out)
            return k
        # SPEECH, audible frame.
        if start - self._last_end >= self._gap:
            # After a pause only the noise compensation bridged, the sound must prove to be
            # speech (as a candidate) before the pause counts as talk: background talkers
            # and clatter would otherwise keep a turn going.
            self._resume = self._speech_end_padded()
            self._state, self._seg_start = _State.CANDIDATE, start
            self._cand_frames = self._cand_voiced = 0
            self._last_end = self._last_voiced = start
            return 0
        if voiced:
            self._pos += n
            self._last_end = self._last_voiced = self._pos
            self._final(self._pos, True, out)
            return n
        # Audible but unvoiced: a consonant, or noise the stretch has run into. Pending until
        # a voiced frame claims it; after `max_unvoiced_ms` the speech ended at the last
        # voiced frame (this also lets the floor follow noise that rose during speech).
        k = max(1, self._last_voiced + self._max_candidate - start)
        if k > n:
            self._pos += n
            self._last_end = self._pos
            return n
        self._pos += k
        self._final(self._speech_end_padded(), True, out)
        self._state = _State.SILENCE
        self._final(self._pos - self._pad, False, out)
        return k
