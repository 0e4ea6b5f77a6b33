"""`PartyQualityTracker`: one party's streaming audio-quality measures (sans-I/O).

Owns the per-party pipeline: 10 ms frames aligned to absolute media time → frame features
(power, digital silence, clipped samples) → metric VAD (`activity.MetricVad`) → one block per
reading interval → speech/noise frames (`noise_frames`) → level/noise/SNR
(`snr.SpeechNoiseEstimator`), clipping and dropouts (`dropouts.DropoutDetector`) →
`QualityReading`; plus the DNSMOS windows (`dnsmos.DnsmosWindow`) and the call summary.

Chunk invariance: every decision is taken on frames or blocks at fixed media positions, with
filter states and windows carried across calls, so the same audio gives the same readings,
activity and windows however it is chunked (a property test checks this). A block is read
once the VAD has decided its frames and 200 ms beyond: readings trail the audio by the batch
plus the VAD's look-ahead (0.4–0.6 s, at most about 1.7 s), at a fixed media-time cadence.

Memory is constant per party (monitor.runtime.footprint adds it up from the settings): the
VAD's floor window, the current block plus look-ahead, K block sums, one or two 9.01 s
DNSMOS windows of native-rate int16 and at most `max_pending_windows` float32 windows waiting
to be taken. The runtime must take the activity spans after each `feed` (else unbounded).

Usage: `feed()` → readings; after each feed `take_activity()` (conversation tracker) and
`take_dnsmos_windows()` (the shared scorer; scores come back through `add_dnsmos()`); at the
end `flush()` then `finish()` (summary).
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import numpy.typing as npt

from audio_quality.activity import FRAME_MS, MetricVad, Run
from audio_quality.dnsmos import WINDOW_MS, DnsmosScore, DnsmosWindow
from audio_quality.dropouts import DropoutDetector
from audio_quality.errors import TrackerFinishedError
from audio_quality.frame_features import HighBand
from audio_quality.levels import POWER_FLOOR, canonical_codec, clip_count, frame_mean_square
from audio_quality.levels import full_scale as codec_full_scale
from audio_quality.noise_frames import LOOKAHEAD, NoiseFrameSelector
from audio_quality.records import ActivitySpan, PartyQualitySummary, QualityReading
from audio_quality.resample import Upsampler2x
from audio_quality.settings import QualitySettings
from audio_quality.snr import IMPACT_SPREAD, SpeechNoiseEstimator

SUPPORTED_RATES = (8000, 16000)
#: Clipping: |x| ≥ this fraction of the codec's full scale, in runs of ≥ 2 samples.
CLIP_LEVEL = 0.999
_WINDOW_FRAMES = WINDOW_MS // FRAME_MS  # 901 frames per DNSMOS window
#: Decided frames past a block before it is read (`noise_frames`, impacts).
_LOOKAHEAD_FRAMES = max(LOOKAHEAD, IMPACT_SPREAD)
#: Per-frame features held from the current block's start.
_FRAME_ARRAYS = ("_power", "_high", "_kurt", "_raw", "_voiced", "_zero", "_floor", "_clipped")


def _db(x: float) -> float:
    return 10.0 * math.log10(max(x, POWER_FLOOR))


class PartyQualityTracker:
    def __init__(
        self,
        party: str,
        sample_rate: int,
        codec: str,
        settings: QualitySettings,
        *,
        batch_phase: float = 0.0,
    ) -> None:
        """`batch_phase` in [0, 1): the first batch runs that fraction of a batch early (no
        result depends on it), so calls that started together do not analyse in one loop turn."""
        if not 0.0 <= batch_phase < 1.0:
            raise ValueError(f"batch_phase must be in [0, 1), got {batch_phase}")
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"sample_rate must be one of {SUPPORTED_RATES}, got {sample_rate}")
        self.party = party
        self.sample_rate = sample_rate
        self.codec = canonical_codec(codec)
        self._settings = settings
        self._fs = codec_full_scale(self.codec)
        self._clip_threshold = CLIP_LEVEL * self._fs
        self._frame_len = sample_rate * FRAME_MS // 1000
        self._block_frames = settings.reading_interval_ms // FRAME_MS
        self._vad = MetricVad(settings.vad, self._fs)
        self._levels = SpeechNoiseEstimator(
            settings.reading_window_ms // settings.reading_interval_ms,
            settings.snr_min_db,
            settings.snr_max_db,
        )
        self._finished = self._flushed = False
        self._samples = 0
        self._pending: list[npt.NDArray[np.int16]] = []  # samples not yet analysed
        self._pending_n = 0
        self._batch = max(1, settings.analysis_batch_ms * sample_rate // 1000)
        self._due = max(1, round(self._batch * (1.0 - batch_phase)))  # pending samples to run
        self._clip_left = np.zeros(2, dtype=np.bool_)
        # Frame features from `_block_start` (frame index) up to the frames seen.
        self._block_start = 0
        self._power = np.empty(0, dtype=np.float64)
        self._high_band = HighBand(sample_rate)
        self._high = np.empty(0, dtype=np.float64)  # power above 2 kHz, and its kurtosis
        self._kurt = np.empty(0, dtype=np.float64)
        self._raw = np.empty(0, dtype=np.bool_)
        self._voiced = np.empty(0, dtype=np.bool_)
        self._zero = np.empty(0, dtype=np.bool_)
        self._floor = np.empty(0, dtype=np.float64)
        self._clipped = np.empty(0, dtype=np.int64)
        self._final = np.empty(0, dtype=np.bool_)  # decided frames only
        self._select = NoiseFrameSelector()
        # Dropouts (cuts inside speech), and missing media as (frame, ms).
        self._drops = DropoutDetector(
            self._frame_len, sample_rate, self._fs, settings.dropout_min_ms,
            settings.dropout_max_ms, settings.dropout_edge_db,
        )  # fmt: skip
        self._missing: list[tuple[int, int]] = []
        self._activity: list[ActivitySpan] = []
        self._seq = 0
        # Totals for the summary.
        self._speech_frames = self._clipped_total = self._dropout_count = 0
        self._dropout_ms = self._missing_ms = 0
        self._snr_min: float | None = None
        # DNSMOS: one window of native audio filling, windows awaiting the VAD, queue out.
        dn = settings.dnsmos
        self._dns_enabled = dn.enabled
        self._dns_buf = np.zeros(_WINDOW_FRAMES * self._frame_len, dtype=np.int16)
        self._dns_fill = 0
        self._dns_seq = 0
        self._dns_waiting: deque[tuple[int, npt.NDArray[np.int16]]] = deque()
        self._dns_speech: dict[int, int] = {}
        self._dns_queue: deque[DnsmosWindow] = deque()
        self._dns_up = Upsampler2x() if sample_rate == 8000 else None
        self._dns_skipped = self._dns_dropped = 0
        self._dns_scores: list[tuple[float, float, float]] = []
        #: Capture pauses (PCI), [start, end) media ms, end None while paused: the samples
        #: there are zeros put in place of the call, so no window that touches one is scored.
        self._paused: list[tuple[int, int | None]] = []

    # ---- input -------------------------------------------------------------------------
    def feed(self, samples: npt.NDArray[np.int16]) -> list[QualityReading]:
        """Feed the party's int16 samples at its native rate; returns finished readings.

        Samples are analysed in batches of at least `analysis_batch_ms` (numpy's per-call
        overhead would otherwise dominate 20 ms chunks); results do not depend on it."""
        if self._finished or self._flushed:
            raise TrackerFinishedError(f"feed() after flush()/finish() on party {self.party}")
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(f"samples must be 1-D int16, got {samples.dtype} {samples.shape}")
        self._samples += samples.size
        self._pending.append(samples.copy())
        self._pending_n += samples.size
        if self._pending_n < self._due:
            return []
        self._due = self._batch
        return self._analyse()

    def _analyse(self) -> list[QualityReading]:
        x = np.concatenate(self._pending) if len(self._pending) > 1 else self._pending[0]
        n = x.size // self._frame_len
        rest = x[n * self._frame_len :]
        self._pending = [rest] if rest.size else []
        self._pending_n = rest.size
        if n == 0:
            return []
        body = x[: n * self._frame_len]
        frames = body.reshape(n, self._frame_len)
        first = self._vad.frames_seen
        power = frame_mean_square(frames) / (self._fs * self._fs)
        high, kurt = self._high_band.process(frames, self._fs)
        zero = np.asarray(~frames.any(axis=1), dtype=np.bool_)
        counts, self._clip_left = clip_count(body, self._clip_threshold, self._clip_left)
        raw, voiced, floor, runs = self._vad.process(frames)
        self._drops.process(first, frames, power, raw)
        self._power = np.concatenate([self._power, power])
        self._high = np.concatenate([self._high, high])
        self._kurt = np.concatenate([self._kurt, kurt])
        self._raw = np.concatenate([self._raw, raw])
        self._voiced = np.concatenate([self._voiced, raw & voiced])
        self._zero = np.concatenate([self._zero, zero])
        self._floor = np.concatenate([self._floor, floor])
        self._clipped = np.concatenate([self._clipped, counts.reshape(n, -1).sum(axis=1)])
        self._take_runs(runs)
        if self._dns_enabled:
            self._dns_append(body)
            self._dns_release()
        return self._emit_blocks()

    def mark_state_change(self, media_ms: int) -> None:
        """The switch changed the call's state at `media_ms` of this party's stream (hold
        started or ended): the metric VAD ends any stretch there (`MetricVad.cut_at`)."""
        self._vad.cut_at(media_ms // FRAME_MS)

    def feed_missing(self, n_samples: int) -> list[QualityReading]:
        """Media the switch never delivered (sequence gap): counted, and fed as zeros so
        media time stays aligned (a gap inside speech also shows as a dropout)."""
        if n_samples < 0:
            raise ValueError(f"n_samples must be >= 0, got {n_samples}")
        frame = (self._vad.frames_seen * self._frame_len + self._pending_n) // self._frame_len
        self._missing.append((frame, n_samples * 1000 // self.sample_rate))
        return self.feed(np.zeros(n_samples, dtype=np.int16))

    def capture_paused(self, media_ms: int) -> None:
        """Capture is paused from `media_ms` (PCI): DNSMOS windows overlapping the pause are
        not scored (counted as skipped)."""
        if not self._paused or self._paused[-1][1] is not None:
            self._paused.append((media_ms, None))

    def capture_resumed(self, media_ms: int) -> None:
        if self._paused and self._paused[-1][1] is None:
            self._paused[-1] = (self._paused[-1][0], max(media_ms, self._paused[-1][0]))

    def _touches_pause(self, start_ms: int, end_ms: int) -> bool:
        # Pauses that ended before this window cannot touch a later one: forgotten (bounded).
        self._paused = [(a, b) for a, b in self._paused if b is None or b > start_ms]
        return any(a < end_ms for a, _ in self._paused)

    def take_activity(self) -> list[ActivitySpan]:
        """Speech/silence spans decided since the last call (for `ConversationTracker`)."""
        out, self._activity = self._activity, []
        return out

    def take_dnsmos_windows(self) -> list[DnsmosWindow]:
        """Windows ready for `DnsmosScorer.score_batch`; at most `max_pending_windows` wait."""
        out = list(self._dns_queue)
        self._dns_queue.clear()
        return out

    def add_dnsmos(self, score: DnsmosScore) -> None:
        """A score for one of this party's windows (from the runtime's scorer worker)."""
        if self._finished:
            raise TrackerFinishedError(f"add_dnsmos() after finish() on party {self.party}")
        if score.party != self.party:
            raise ValueError(f"score is for party {score.party!r}, tracker is {self.party!r}")
        self._dns_scores.append((score.sig_mos, score.bak_mos, score.ovrl_mos))

    def flush(self) -> list[QualityReading]:
        """End of audio: decide the frames still pending and return the last readings
        (the last one may cover less than a reading interval). Feeding afterwards raises."""
        if self._flushed:
            return []
        self._flushed = True
        out = self._analyse() if self._pending_n else []
        self._take_runs(self._vad.finish())
        self._drops.finish()
        out += self._emit_blocks(flushing=True)
        if self._power.size:
            out.append(self._read_block(self._power.size))
        self._dns_release()
        return out

    def finish(self) -> PartyQualitySummary:
        """The call summary (calls `flush()` first if the runtime did not)."""
        if self._finished:
            raise TrackerFinishedError(f"finish() called twice on party {self.party}")
        self.flush()
        self._finished = True
        total = self._levels.total()
        frames = self._vad.frames_seen
        n = self._samples
        dns = np.asarray(self._dns_scores, dtype=np.float64).reshape(-1, 3)
        has = dns.shape[0] > 0
        return PartyQualitySummary(
            party=self.party,
            sample_rate_hz=self.sample_rate,
            codec=self.codec,
            duration_ms=n * 1000 // self.sample_rate,
            speech_ms=self._speech_frames * FRAME_MS,
            speech_ratio=self._speech_frames / frames if frames else 0.0,
            speech_level_dbov=total.speech_level_dbov,
            noise_level_dbov=total.noise_level_dbov,
            snr_db=total.snr_db,
            snr_min_db=self._snr_min,
            clipped_samples=self._clipped_total,
            clip_ratio=self._clipped_total / n if n else 0.0,
            dropouts=self._dropout_count,
            dropout_ms=self._dropout_ms,
            missing_ms=self._missing_ms,
            readings=self._seq,
            dnsmos_windows_scored=int(dns.shape[0]),
            dnsmos_windows_skipped=self._dns_skipped,
            dnsmos_windows_dropped=self._dns_dropped,
            dnsmos_sig_mean=float(dns[:, 0].mean()) if has else None,
            dnsmos_bak_mean=float(dns[:, 1].mean()) if has else None,
            dnsmos_ovrl_mean=float(dns[:, 2].mean()) if has else None,
            dnsmos_ovrl_min=float(dns[:, 2].min()) if has else None,
            dnsmos_model_sample_rate_hz=16_000,
        )

    # ---- internals ---------------------------------------------------------------------
    def _take_runs(self, runs: list[Run]) -> None:
        for start, end, speech in runs:
            self._activity.append(
                ActivitySpan(self.party, start * FRAME_MS, end * FRAME_MS, speech)
            )
            self._final = np.concatenate([self._final, np.full(end - start, speech)])
            if speech:
                self._speech_frames += end - start
            if speech and self._dns_enabled:
                for w in range(start // _WINDOW_FRAMES, (end - 1) // _WINDOW_FRAMES + 1):
                    lo, hi = max(start, w * _WINDOW_FRAMES), min(end, (w + 1) * _WINDOW_FRAMES)
                    self._dns_speech[w] = self._dns_speech.get(w, 0) + hi - lo
        if self._dns_enabled:
            self._dns_release()

    def _emit_blocks(self, flushing: bool = False) -> list[QualityReading]:
        # A block is read once the VAD has decided it and the look-ahead after it.
        need = self._block_frames + (0 if flushing else _LOOKAHEAD_FRAMES)
        out: list[QualityReading] = []
        while self._final.size >= need:
            out.append(self._read_block(self._block_frames))
        return out

    def _read_block(self, n: int) -> QualityReading:
        start, end = self._block_start, self._block_start + n
        power, final = self._power[:n], self._final[:n]
        ahead = slice(0, n + _LOOKAHEAD_FRAMES)
        speech, noise = self._select.select(
            n, self._power[ahead], self._raw[:n], self._final[ahead], self._voiced[ahead],
            self._zero[:n], self._levels.pool(), self._levels.level_power(),
        )  # fmt: skip
        # Frames past the block let an impact that straddles the block edge be found whole.
        p, hi, ku = self._power[ahead], self._high[ahead], self._kurt[ahead]
        self._levels.add_block(p, speech, noise, self._floor[:n], hi, ku)
        est = self._levels.rolling()
        window_frames = self._settings.reading_window_ms // FRAME_MS
        window_start = max(0, end - window_frames)
        if est.snr_db is not None and end >= window_frames:
            # Only full windows: the first seconds of a call give unstable figures.
            self._snr_min = est.snr_db if self._snr_min is None else min(self._snr_min, est.snr_db)
        clipped = int(self._clipped[:n].sum())
        drops = self._drops.take(end)
        missing = sum(ms for f, ms in self._missing if f < end)
        self._missing = [m for m in self._missing if m[0] >= end]
        self._clipped_total += clipped
        self._dropout_count += len(drops)
        self._dropout_ms += sum(d[1] for d in drops)
        self._missing_ms += missing
        reading = QualityReading(
            party=self.party,
            seq=self._seq,
            start_ms=start * FRAME_MS,
            end_ms=end * FRAME_MS,
            window_start_ms=window_start * FRAME_MS,
            speech_ms=int(final.sum()) * FRAME_MS,
            rms_dbov=_db(float(power.mean()) if n else 0.0),
            speech_level_dbov=est.speech_level_dbov,
            noise_level_dbov=est.noise_level_dbov,
            snr_db=est.snr_db,
            clipped_samples=clipped,
            clip_ratio=clipped / (n * self._frame_len),
            dropouts=len(drops),
            dropout_ms=sum(d[1] for d in drops),
            missing_ms=missing,
            dnsmos_ovrl=self._dns_scores[-1][2] if self._dns_scores else None,
        )
        self._seq += 1
        self._block_start = end
        for name in (*_FRAME_ARRAYS, "_final"):
            setattr(self, name, getattr(self, name)[n:])
        return reading

    def _dns_append(self, body: npt.NDArray[np.int16]) -> None:
        pos = 0
        while pos < body.size:
            take = min(body.size - pos, self._dns_buf.size - self._dns_fill)
            self._dns_buf[self._dns_fill : self._dns_fill + take] = body[pos : pos + take]
            self._dns_fill += take
            pos += take
            if self._dns_fill == self._dns_buf.size:
                self._dns_waiting.append((self._dns_seq, self._dns_buf.copy()))
                self._dns_seq += 1
                self._dns_fill = 0

    def _dns_release(self) -> None:
        """Windows whose frames the VAD has decided: queue them if they hold enough speech."""
        min_ratio = self._settings.dnsmos.min_speech_ratio
        while self._dns_waiting and (
            (self._dns_waiting[0][0] + 1) * _WINDOW_FRAMES <= self._vad.frames_final
        ):
            seq, audio = self._dns_waiting.popleft()
            ratio = self._dns_speech.pop(seq, 0) / _WINDOW_FRAMES
            # The up-sampler must see every window in order to stay continuous.
            up = self._dns_up.process(audio) if self._dns_up is not None else audio
            if ratio < min_ratio or self._touches_pause(seq * WINDOW_MS, (seq + 1) * WINDOW_MS):
                self._dns_skipped += 1
                continue
            if len(self._dns_queue) >= self._settings.dnsmos.max_pending_windows:
                self._dns_queue.popleft()
                self._dns_dropped += 1
            self._dns_queue.append(
                DnsmosWindow(
                    party=self.party,
                    seq=seq,
                    start_ms=seq * WINDOW_MS,
                    end_ms=(seq + 1) * WINDOW_MS,
                    speech_ratio=ratio,
                    source_sample_rate_hz=self.sample_rate,
                    codec=self.codec,
                    samples=(up.astype(np.float32) / np.float32(32768.0)),
                )
            )
