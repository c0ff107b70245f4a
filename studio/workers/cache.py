"""ModelCache: loaded pipelines kept between jobs, least recently used evicted to stay within a byte budget.

Room is made before a model loads whenever its size is known — given by the caller (e.g. its size on disk) or
measured when the same model was loaded before — so the models in memory stay within the budget while the new one
loads, not only once it has. Only a model of unknown size (its first load, without an estimate) can overshoot, by
itself, until it is measured right after loading.
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ModelCache(Generic[T]):
    def __init__(self, budget_bytes: int, size_of: Callable[[T], int]) -> None:
        self.budget_bytes = budget_bytes
        self._size_of = size_of
        self._entries: OrderedDict[str, tuple[T, int]] = OrderedDict()
        # last measured size of every model loaded so far, kept after eviction: the estimate when it loads again
        self._measured: dict[str, int] = {}
        self.loads = 0  # how many times a loader ran (models switched in), for logs and tests

    @property
    def used_bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def keys(self) -> list[str]:
        return list(self._entries)

    def get(self, key: str, loader: Callable[[], T], expected_bytes: int | None = None) -> T:
        """The model cached under `key`, else `loader()`'s, kept. Before loading, least recently used models are
        evicted until the new one fits: by the size it had when loaded before, else by `expected_bytes` (an
        estimate such as its size on disk), else only after it has loaded and been measured."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key][0]
        self._measure_again()
        expected = self._measured.get(key, expected_bytes)
        if expected is not None:
            self._evict(incoming=expected, reason=f"to make room for {key} ({expected / 1e9:.2f} GB) before it loads")
        value = loader()
        self.loads += 1
        size = self._measured[key] = self._size_of(value)
        if size > self.budget_bytes:
            logger.warning("model %s needs %.2f GB, more than the whole cache budget of %.2f GB: it is kept alone",
                           key, size / 1e9, self.budget_bytes / 1e9)
        self._entries[key] = (value, size)
        self._evict(keep=key, reason="to stay within the cache budget")
        return value

    def clear(self) -> None:
        self._entries.clear()
        _free_memory()

    def _measure_again(self) -> None:
        """A pipeline may load parts on first use (style transfer loads each mode's networks when it first runs),
        so what it holds now can exceed what it held when it was loaded."""
        for key, (value, _) in list(self._entries.items()):
            size = self._measured[key] = self._size_of(value)
            self._entries[key] = (value, size)

    def _evict(self, *, incoming: int = 0, keep: str | None = None, reason: str) -> None:
        """Drop least recently used models (never `keep`) until `incoming` more bytes fit in the budget."""
        evicted = False
        while self.used_bytes + incoming > self.budget_bytes:
            oldest = next((k for k in self._entries if k != keep), None)
            if oldest is None:
                break
            _, size = self._entries.pop(oldest)
            logger.info("evicted model %s (%.2f GB) %s", oldest, size / 1e9, reason)
            evicted = True
        if evicted:
            _free_memory()  # before a load, too: the evicted weights must be gone before the new ones arrive


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
