"""ModelCache: loaded pipelines kept between jobs, least recently used evicted to stay within two byte budgets —
main memory (RAM) and the GPU's memory (VRAM) — each counted by where the model's tensors live.

A model on a GPU counts against VRAM; a model on the CPU, or the parts of one kept off the GPU between uses (low-VRAM
offload), against RAM. Room is made before a model loads whenever its size is known — given by the caller (e.g. its
size on disk, counted where the worker puts models) or measured when the same model was loaded before — so the models
in memory stay within the budgets while the new one loads, not only once it has. Only a model of unknown size (its
first load, without an estimate) can overshoot, by itself, until it is measured right after loading.
"""

from __future__ import annotations

import gc
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")
KINDS = ("ram", "vram")


@dataclass(frozen=True)
class MemoryBudget:
    """What a worker's loaded models may hold: `ram` bytes of main memory, `vram` of the GPU's (None: 90% of the
    GPU's memory, found by the worker; unused on CPU)."""
    ram: int
    vram: int | None = None


class ModelCache(Generic[T]):
    def __init__(self, budgets: Mapping[str, int], size_of: Callable[[T], Mapping[str, int]],
                 loads_into: str = "ram") -> None:
        """`budgets` and `size_of`'s answers are bytes by kind ("ram", "vram"); `loads_into` is the kind an
        estimate given to `get` counts against (where the worker puts the models it loads)."""
        self.budgets = {kind: int(budgets.get(kind, 0)) for kind in KINDS}
        self._size_of = size_of
        self._loads_into = loads_into
        self._entries: OrderedDict[str, tuple[T, dict[str, int]]] = OrderedDict()
        # last measured size of every model loaded so far, kept after eviction: the estimate when it loads again
        self._measured: dict[str, dict[str, int]] = {}
        self.loads = 0  # how many times a loader ran (models switched in), for logs and tests

    def used(self) -> dict[str, int]:
        """Bytes the cached models hold, by kind."""
        return {kind: sum(size.get(kind, 0) for _, size in self._entries.values()) for kind in KINDS}

    @property
    def used_bytes(self) -> int:
        return sum(self.used().values())

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
        expected = self._measured.get(key)
        if expected is None and expected_bytes is not None:
            expected = {self._loads_into: expected_bytes}
        if expected is not None:
            self._evict(incoming=expected, reason=f"to make room for {key} ({_gb(expected)}) before it loads")
        value = loader()
        self.loads += 1
        size = self._measured[key] = _sizes(self._size_of(value))
        over = [kind for kind in KINDS if size[kind] > self.budgets[kind]]
        if over:
            logger.warning("model %s needs %s, more than the cache's whole %s budget (%s): it is kept alone",
                           key, _gb(size), " and ".join(k.upper() for k in over), _gb(self.budgets))
        self._entries[key] = (value, size)
        self._evict(keep=key, reason="to stay within the cache budgets")
        return value

    def clear(self) -> None:
        self._entries.clear()
        _free_memory()

    def _measure_again(self) -> None:
        """A pipeline may load parts on first use (style transfer loads each mode's networks when it first runs),
        so what it holds now can exceed what it held when it was loaded."""
        for key, (value, _) in list(self._entries.items()):
            size = self._measured[key] = _sizes(self._size_of(value))
            self._entries[key] = (value, size)

    def _over(self, incoming: Mapping[str, int]) -> list[str]:
        """The kinds whose budget the cached models plus `incoming` exceed."""
        used = self.used()
        return [kind for kind in KINDS if used[kind] + incoming.get(kind, 0) > self.budgets[kind]]

    def _evict(self, *, incoming: Mapping[str, int] | None = None, keep: str | None = None, reason: str) -> None:
        """Drop least recently used models (never `keep`) until `incoming` more bytes fit in the budgets: of those
        holding memory of an exceeded kind, so a model offloaded to RAM stays when only VRAM is short."""
        incoming = incoming or {}
        evicted = False
        while over := self._over(incoming):
            oldest = next((k for k, (_, size) in self._entries.items()
                           if k != keep and any(size[kind] for kind in over)), None)
            if oldest is None:
                break
            _, size = self._entries.pop(oldest)
            logger.info("evicted model %s (%s) %s", oldest, _gb(size), reason)
            evicted = True
        if evicted:
            _free_memory()  # before a load, too: the evicted weights must be gone before the new ones arrive


def _sizes(size: Mapping[str, int]) -> dict[str, int]:
    return {kind: int(size.get(kind, 0)) for kind in KINDS}


def _gb(size: Mapping[str, int]) -> str:
    parts = [f"{kind.upper()} {size[kind] / 1e9:.2f} GB" for kind in KINDS if size.get(kind)]
    return ", ".join(parts) or "0 GB"


def _free_memory() -> None:
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
