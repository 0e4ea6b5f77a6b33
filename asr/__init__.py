"""Speech recognition for callwatch: utterances in, `AsrResult`s out.

Modules (import the heavy ones explicitly; importing `asr` itself loads no model code):

* `asr.types` - the seam: `AsrRequest`, `AsrResult`, the `Engine` protocol.
* `asr.errors` - `AsrError` and its subclasses.
* `asr.models` - which model files to load (`resolve_model`) and where (`pick_device`).
* `asr.engine` - `WhisperEngine`, the only importer of faster-whisper (with `asr.decoding`, its
  decoding part).
* `asr.window` - the encoder window, the fallback gates and the speech gates (pure).
* `asr.language` - `LanguageTracker`, a party's language locked after confident detections.
* `asr.pool` - `AsrPool`, worker processes that keep decoding off the event loop.
* `asr.textnorm` - Simplified Chinese, phantom-phrase removal, spacing, numbers in words.

WER / CER scoring for tests and benchmarks lives in `evaluation.scoring`, outside the product.
"""

from asr.errors import AsrError, AsrWorkerError, ModelLoadError, ModelNotFoundError
from asr.types import AsrRequest, AsrResult, Engine

__all__ = [
    "AsrError",
    "AsrRequest",
    "AsrResult",
    "AsrWorkerError",
    "Engine",
    "ModelLoadError",
    "ModelNotFoundError",
]
