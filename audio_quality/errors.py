"""The audio-quality package's exception tree (small on purpose).

Bad arguments still raise `ValueError` naming the parameter and the value; these types are for
conditions a caller may want to catch and map: a missing model, a tracker used after `finish`.
"""

from __future__ import annotations


class QualityError(Exception):
    """Base of every error this package raises on purpose (other than `ValueError`)."""


class TrackerFinishedError(QualityError):
    """A tracker was fed or finished again after `finish()` (a bug in the caller)."""


class DnsmosModelError(QualityError):
    """The DNSMOS ONNX model could not be found or loaded; the message says where we looked."""
