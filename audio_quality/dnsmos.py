"""DNSMOS P.835 (SIG, BAK, OVRL) scoring, run by our own code on whole 9.01 s windows.

Owns the window/score records and the scorer. The ONNX model `sig_bak_ovr.onnx` (MIT,
Microsoft) comes from the PyPI package `speechmos`; we only read the file from it. We do not
import `speechmos.dnsmos`: it imports librosa and requests, keeps a process-global session,
tiles short clips and scores overlapping windows with a 1 s hop (about 4× the CPU of
non-overlapping windows), none of which suits a live monitor (QUALITY_METRICS.md §2).

Input rules the model imposes: 16 kHz only, fixed length 144160 samples (9.01 s), floats in
[-1, 1]; the batch dimension is free. 8 kHz parties are up-sampled first, so their scores
carry the narrow-band penalty: compare scores only within the same source rate and codec,
which is why both are stored beside every score. The raw outputs are mapped by the same
polynomials as `speechmos` and the upstream `dnsmos_local.py`.

`DnsmosScorer` holds one onnxruntime session, loaded once and shared by all calls; onnxruntime
sessions may be run from several threads, and the runtime calls `score_batch` in a worker.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from audio_quality.errors import DnsmosModelError

MODEL_SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 144_160  # 9.01 s at 16 kHz, the model's fixed input length
WINDOW_MS = 9010

# Polynomials mapping the raw model outputs to MOS (speechmos 0.0.1.1, dnsmos.py).
_POLY: dict[str, tuple[np.poly1d, np.poly1d, np.poly1d]] = {
    "dnsmos": (
        np.poly1d([-0.08397278, 1.22083953, 0.0052439]),
        np.poly1d([-0.13166888, 1.60915514, -0.39604546]),
        np.poly1d([-0.06766283, 1.11546468, 0.04602535]),
    ),
    "dnsmos_personalized": (
        np.poly1d([-0.01019296, 0.02751166, 1.19576786, -0.24348726]),
        np.poly1d([-0.04976499, 0.44276479, -0.1644611, 0.96883132]),
        np.poly1d([-0.00533021, 0.005101, 1.18058466, -0.11236046]),
    ),
}
#: What onnxruntime raises for an unreadable or invalid model file (not OSError subclasses).
_ORT_LOAD_ERRORS = (
    _ort_state.Fail,
    _ort_state.InvalidArgument,
    _ort_state.InvalidGraph,
    _ort_state.InvalidProtobuf,
    _ort_state.NoSuchFile,
)
_MODEL_DIRS = {"dnsmos": "dnsmos_models", "dnsmos_personalized": "pdnsmos_models"}


@dataclass(frozen=True, slots=True)
class DnsmosWindow:
    """One party's 9.01 s of audio to score; built by `PartyQualityTracker`."""

    party: str
    seq: int  # window number within the party, from 0
    start_ms: int  # media time of the party
    end_ms: int
    speech_ratio: float  # fraction of the window the metric VAD called speech
    source_sample_rate_hz: int  # the party's native rate (8000 means up-sampled)
    codec: str
    samples: npt.NDArray[np.float32]  # (144160,) float32 at 16 kHz, in [-1, 1]


@dataclass(frozen=True, slots=True)
class DnsmosScore:
    """DNSMOS P.835 scores of one window, with what is needed to compare them fairly."""

    party: str
    seq: int
    start_ms: int
    end_ms: int
    sig_mos: float
    bak_mos: float
    ovrl_mos: float
    source_sample_rate_hz: int
    codec: str
    model: str
    model_sample_rate_hz: int = MODEL_SAMPLE_RATE


def default_model_path(model: Literal["dnsmos", "dnsmos_personalized"] = "dnsmos") -> Path:
    """Where the `speechmos` wheel keeps `sig_bak_ovr.onnx` (raises `DnsmosModelError`)."""
    try:
        root = importlib.resources.files("speechmos")
    except ModuleNotFoundError:
        raise DnsmosModelError(
            "DNSMOS needs the model files of the PyPI package `speechmos`: pip install speechmos"
        ) from None
    path = Path(str(root.joinpath(_MODEL_DIRS[model], "sig_bak_ovr.onnx")))
    if not path.is_file():
        raise DnsmosModelError(f"DNSMOS model not found at {path}; reinstall `speechmos`")
    return path


class DnsmosScorer:
    """Scores batches of windows with one shared onnxruntime session."""

    def __init__(
        self,
        model_path: Path | None = None,
        model: Literal["dnsmos", "dnsmos_personalized"] = "dnsmos",
        intra_op_threads: int = 1,
    ) -> None:
        if model not in _POLY:
            raise ValueError(f"model must be one of {sorted(_POLY)}, got {model!r}")
        if intra_op_threads < 1:
            raise ValueError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        self.model = model
        self.model_path = model_path or default_model_path(model)
        if not self.model_path.is_file():
            raise DnsmosModelError(f"DNSMOS model not found at {self.model_path}")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        # The arena keeps the peak of the largest batch for the life of the process (about
        # 470 MB per 9 s window); without it, memory goes back after each batch.
        opts.enable_cpu_mem_arena = False
        try:
            self._session = ort.InferenceSession(
                str(self.model_path), opts, providers=["CPUExecutionProvider"]
            )
        except _ORT_LOAD_ERRORS as exc:
            raise DnsmosModelError(f"cannot load DNSMOS model {self.model_path}: {exc}") from exc
        self._input = self._session.get_inputs()[0].name

    def score_raw(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """Model outputs mapped to MOS for a `(n, 144160)` float32 batch in [-1, 1].
        Returns `(n, 3)` float64: SIG, BAK, OVRL."""
        if batch.ndim != 2 or batch.shape[1] != WINDOW_SAMPLES:
            raise ValueError(f"batch must have shape (n, {WINDOW_SAMPLES}), got {batch.shape}")
        if batch.shape[0] == 0:
            return np.zeros((0, 3))
        x = np.clip(np.ascontiguousarray(batch, dtype=np.float32), -1.0, 1.0)
        raw = np.asarray(self._session.run(None, {self._input: x})[0], dtype=np.float64)
        p_sig, p_bak, p_ovr = _POLY[self.model]
        return np.stack([p_sig(raw[:, 0]), p_bak(raw[:, 1]), p_ovr(raw[:, 2])], axis=1)

    def score_batch(self, windows: Sequence[DnsmosWindow]) -> list[DnsmosScore]:
        """Score windows from any parties and calls in one model run; results in input order."""
        if not windows:
            return []
        mos = self.score_raw(np.stack([w.samples for w in windows]))
        return [
            DnsmosScore(
                party=w.party,
                seq=w.seq,
                start_ms=w.start_ms,
                end_ms=w.end_ms,
                sig_mos=float(m[0]),
                bak_mos=float(m[1]),
                ovrl_mos=float(m[2]),
                source_sample_rate_hz=w.source_sample_rate_hz,
                codec=w.codec,
                model=self.model,
            )
            for w, m in zip(windows, mos, strict=True)
        ]
