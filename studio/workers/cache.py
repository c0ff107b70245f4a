"""ModelCache: loaded pipelines kept between jobs, least recently used evicted to stay within a byte budget."""

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
        self.loads = 0  # how many times a loader ran (models switched in), for logs and tests

    @property
    def used_bytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def keys(self) -> list[str]:
        return list(self._entries)

    def get(self, key: str, loader: Callable[[], T]) -> T:
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key][0]
        value = loader()
        self.loads += 1
        size = self._size_of(value)
        if size > self.budget_bytes:
            logger.warning("model %s needs %.2f GB, more than the whole cache budget of %.2f GB: it is kept alone",
                           key, size / 1e9, self.budget_bytes / 1e9)
        self._entries[key] = (value, size)
        self._evict(keep=key)
        return value

    def clear(self) -> None:
        self._entries.clear()
        _free_memory()

    def _evict(self, keep: str) -> None:
        evicted = False
        while self.used_bytes > self.budget_bytes and len(self._entries) > 1:
            oldest = next(k for k in self._entries if k != keep)
            _, size = self._entries.pop(oldest)
            logger.info("evicted model %s (%.2f GB) to stay within the cache budget", oldest, size / 1e9)
            evicted = True
        if evicted:
            _free_memory()


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
