"""Cut one party's 16 kHz audio into utterances for ASR (sans-I/O, chunk-invariant).

webrtcvad classifies fixed frames aligned to absolute sample positions, so the same audio
gives the same utterances however it was chunked on the wire. An utterance opens after
`min_speech_ms` of consecutive voiced frames and closes after `end_silence_ms` of unvoiced
ones; `pad_ms` of context is kept on both sides (Whisper clips words without it). Utterances
are capped at `max_utterance_s` (Whisper's window is 30 s; long ones also delay the transcript);
a capped utterance continues as a new one with no gap. Utterances with less than
`min_utterance_ms` of voiced frames (clicks, breaths, line noise) are dropped.

Memory is bounded: one preallocated history buffer of max utterance + padding per party.
These settings are tuned for ASR, not for talk-time metrics (QUALITY_METRICS.md).
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt
import webrtcvad

from asr.settings import VadSettings
from monitor.core.events import ANALYSIS_RATE, Party, UtteranceEnded


class _State(enum.Enum):
    SILENCE = "silence"
    SPEECH = "speech"


class UtteranceSegmenter:
    def __init__(self, party: Party, settings: VadSettings) -> None:
        self.party = party
        self._vad = webrtcvad.Vad(settings.aggressiveness)
        ms = ANALYSIS_RATE // 1000
        self._frame = settings.frame_ms * ms
        self._frame_ms = settings.frame_ms
        self._pad = settings.pad_ms * ms
        self._open_frames = max(1, -(-settings.min_speech_ms // settings.frame_ms))
        self._close_frames = max(1, -(-settings.end_silence_ms // settings.frame_ms))
        self._max_len = int(settings.max_utterance_s * ANALYSIS_RATE)
        self._min_voiced_ms = settings.min_utterance_ms
        # History: in silence, enough for the pad plus an opening run; in speech, a whole
        # capped utterance with its pads, plus one frame of slack.
        self._keep_silent = self._pad + (self._open_frames + 1) * self._frame
        cap = self._max_len + 2 * self._pad + (self._close_frames + 2) * self._frame
        self._hist = np.zeros(cap, dtype=np.int16)
        self._hist_start = 0  # absolute sample index of _hist[0]
        self._hist_len = 0
        self._carry = np.empty(0, dtype=np.int16)
        self._pos = 0  # absolute index of the next frame to classify
        self._state = _State.SILENCE
        self._run = 0  # voiced run (silence) or unvoiced run (speech), in frames
        self._run_start = 0
        self._utt_start = 0
        self._utt_padded = True
        self._last_voiced_end = 0
        self._voiced_frames = 0

    @property
    def samples_processed(self) -> int:
        return self._pos

    @property
    def in_speech(self) -> bool:
        return self._state is _State.SPEECH

    @property
    def open_from_sample(self) -> int:
        """The earliest sample an utterance not emitted yet may hold: the start of the one
        being spoken (padding included), or in silence how far back an opening one reaches
        (its pad and its opening run; audio redaction counts what is before as checked)."""
        if self._state is _State.SPEECH:
            return self._utt_first_sample()
        return max(0, self._pos - self._keep_silent)

    def feed(self, audio: npt.NDArray[np.int16]) -> list[UtteranceEnded]:
        """Feed 16 kHz int16 samples; return the utterances that ended inside them."""
        if self._carry.size:
            audio = np.concatenate([self._carry, audio])
        n_frames = audio.size // self._frame
        out: list[UtteranceEnded] = []
        for i in range(n_frames):
            frame = audio[i * self._frame : (i + 1) * self._frame]
            self._step(frame, out)
        self._carry = audio[n_frames * self._frame :].copy()
        return out

    def finish(self) -> list[UtteranceEnded]:
        """End of the call: emit the utterance in progress, if any."""
        out: list[UtteranceEnded] = []
        if self._state is _State.SPEECH:
            end = min(self._last_voiced_end + self._pad, self._pos)
            self._emit(end, capped=False, out=out)
            self._state = _State.SILENCE
        return out

    def _append(self, frame: npt.NDArray[np.int16]) -> None:
        if self._hist_len + frame.size > self._hist.size:
            if self._state is _State.SPEECH:
                keep_from = self._utt_start - (self._pad if self._utt_padded else 0)
            else:
                keep_from = self._pos - self._keep_silent
            drop = min(max(0, keep_from - self._hist_start), self._hist_len)
            self._hist[: self._hist_len - drop] = self._hist[drop : self._hist_len].copy()
            self._hist_start += drop
            self._hist_len -= drop
        self._hist[self._hist_len : self._hist_len + frame.size] = frame
        self._hist_len += frame.size

    def _step(self, frame: npt.NDArray[np.int16], out: list[UtteranceEnded]) -> None:
        self._append(frame)
        start, end = self._pos, self._pos + self._frame
        voiced = self._vad.is_speech(frame.tobytes(), ANALYSIS_RATE)
        self._pos = end
        if self._state is _State.SILENCE:
            if not voiced:
                self._run = 0
                return
            if self._run == 0:
                self._run_start = start
            self._run += 1
            if self._run >= self._open_frames:
                self._state = _State.SPEECH
                self._utt_start, self._utt_padded = self._run_start, True
                self._voiced_frames, self._last_voiced_end, self._run = self._run, end, 0
            return
        if voiced:
            self._voiced_frames += 1
            self._last_voiced_end = end
            self._run = 0
        else:
            self._run += 1
        if self._run >= self._close_frames:
            self._emit(self._last_voiced_end + self._pad, capped=False, out=out)
            self._state, self._run = _State.SILENCE, 0
        elif end - self._utt_first_sample() >= self._max_len:
            self._emit(end, capped=True, out=out)
            # Speech goes on: the next utterance starts exactly here, without overlap.
            self._utt_start, self._utt_padded = end, False
            self._voiced_frames, self._run = 0, 0

    def _utt_first_sample(self) -> int:
        return max(0, self._utt_start - (self._pad if self._utt_padded else 0))

    def _emit(self, end: int, *, capped: bool, out: list[UtteranceEnded]) -> None:
        first = max(self._utt_first_sample(), self._hist_start)
        voiced_ms = self._voiced_frames * self._frame_ms
        if voiced_ms < self._min_voiced_ms or end <= first:
            return
        lo, hi = first - self._hist_start, end - self._hist_start
        out.append(
            UtteranceEnded(
                party=self.party,
                start_sample=first,
                end_sample=end,
                audio=self._hist[lo:hi].copy(),
                voiced_ms=voiced_ms,
                capped=capped,
            )
        )
