"""The exceptions the `asr` package raises; callers catch `AsrError` for all of them.

The tree is deliberately small:

* `AsrError` - base class.
  * `ModelNotFoundError` - the configured model cannot be found (and may not be downloaded).
  * `ModelLoadError` - model files were found but the runtime could not load them
    (corrupt or truncated file, unsupported device or compute type, out of memory).
  * `AsrWorkerError` - a worker process of `AsrPool` died or the pool is closed.
    * `AsrUnavailable` - no worker could be reached at all (remote ASR with the bus away,
      or no worker serving): the utterance waits for them rather than being given up.

Bad arguments (wrong audio dtype, unknown language) raise `ValueError` naming the parameter,
as everywhere in callwatch. Every class takes one message string so that instances survive
pickling across the worker-process boundary unchanged.
"""

from __future__ import annotations


class AsrError(Exception):
    """Base class of every error raised by the `asr` package."""


class ModelNotFoundError(AsrError):
    """The configured model is not a directory, not bundled and not downloadable here."""


class ModelLoadError(AsrError):
    """The model files exist but could not be loaded by faster-whisper / CTranslate2."""


class AsrWorkerError(AsrError):
    """A worker process died while transcribing, or the pool was used after `close()`."""


class AsrUnavailable(AsrWorkerError):
    """No worker could even be asked (the bus is away, or no worker serves): not the
    utterance's fault, so it is kept for later instead of counted as a failed attempt."""
