"""The model cache keeps models between jobs and evicts the least recently used beyond its byte budgets (RAM and
VRAM, each counted where a model's tensors live)."""

from __future__ import annotations

from collections.abc import Callable

from studio.workers.cache import ModelCache


def ram_cache(budget: int, size_of: Callable[[str], int]) -> ModelCache[str]:
    """A cache of models that live in main memory only (a CPU worker's)."""
    return ModelCache({"ram": budget}, size_of=lambda v: {"ram": size_of(v)})


def test_reuses_loaded_models_and_evicts_least_recently_used() -> None:
    loaded: list[str] = []

    def loader(name: str):
        return lambda: loaded.append(name) or name

    cache: ModelCache[str] = ram_cache(10, lambda _: 4)
    cache.get("a", loader("a"))
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # hit: "a" becomes most recent
    cache.get("c", loader("c"))  # 12 bytes > 10: the least recent, "b", goes
    assert loaded == ["a", "b", "c"] and cache.keys() == ["a", "c"] and cache.used_bytes == 8
    assert cache.loads == 3


def test_a_model_bigger_than_the_budget_is_kept_alone() -> None:
    cache: ModelCache[str] = ram_cache(10, lambda v: 50 if v == "huge" else 4)
    cache.get("small", lambda: "small")
    cache.get("huge", lambda: "huge")
    assert cache.keys() == ["huge"]


def test_an_expected_size_makes_room_before_the_model_loads() -> None:
    cache: ModelCache[str] = ram_cache(10, lambda _: 4)
    cache.get("a", lambda: "a")
    cache.get("b", lambda: "b")
    held_while_loading: list[tuple[list[str], int]] = []

    def load_c() -> str:
        held_while_loading.append((cache.keys(), cache.used_bytes))
        return "c"

    cache.get("c", load_c, expected_bytes=4)
    assert held_while_loading == [(["b"], 4)]  # 4 held + 4 arriving ≤ 10: "a" went before "c" loaded
    assert cache.keys() == ["b", "c"] and cache.used_bytes == 8


def test_a_model_loaded_before_makes_room_by_its_measured_size() -> None:
    sizes = {"a": 6, "b": 6}
    cache: ModelCache[str] = ram_cache(10, lambda v: sizes[v])
    held_while_loading: list[list[str]] = []

    def loader(name: str):
        return lambda: held_while_loading.append(cache.keys()) or name

    cache.get("a", loader("a"))
    cache.get("b", loader("b"))  # first load of "b": its size is unknown until it is measured, so "a" goes after
    cache.get("a", loader("a"), expected_bytes=1)  # an estimate does not override a measured size
    assert held_while_loading == [[], ["a"], []]
    assert cache.keys() == ["a"] and cache.loads == 3


def test_sizes_are_measured_again_before_making_room() -> None:
    sizes = {"grows": 2, "b": 4}
    cache: ModelCache[str] = ram_cache(10, lambda v: sizes[v])
    cache.get("grows", lambda: "grows")
    sizes["grows"] = 8  # e.g. style transfer loading a mode's networks on its first run
    held_while_loading: list[list[str]] = []
    cache.get("b", lambda: held_while_loading.append(cache.keys()) or "b", expected_bytes=4)
    assert held_while_loading == [[]] and cache.keys() == ["b"]


def test_an_expected_size_beyond_the_budget_empties_the_cache_first() -> None:
    cache: ModelCache[str] = ram_cache(10, lambda v: 50 if v == "huge" else 4)
    cache.get("small", lambda: "small")
    held_while_loading: list[list[str]] = []
    cache.get("huge", lambda: held_while_loading.append(cache.keys()) or "huge", expected_bytes=50)
    assert held_while_loading == [[]] and cache.keys() == ["huge"]
    cache.get("small", lambda: "small")  # the next model makes room by its known size: "huge" goes first
    assert cache.keys() == ["small"] and cache.used_bytes == 4



def test_ram_and_vram_have_their_own_budgets() -> None:
    # a GPU worker: models on the GPU count against VRAM; one offloaded to the CPU (low VRAM) against RAM
    sizes = {"gpu-a": {"vram": 6, "ram": 1}, "gpu-b": {"vram": 6}, "offloaded": {"ram": 8}}
    cache: ModelCache[str] = ModelCache({"ram": 10, "vram": 8}, size_of=lambda v: sizes[v], loads_into="vram")
    held_while_loading: list[list[str]] = []

    def loader(name: str):
        return lambda: held_while_loading.append(cache.keys()) or name

    cache.get("offloaded", loader("offloaded"))
    cache.get("gpu-a", loader("gpu-a"))
    assert cache.keys() == ["offloaded", "gpu-a"] and cache.used() == {"ram": 9, "vram": 6}
    # 6 more GB of VRAM (an estimate counts where the worker loads models): "gpu-a" makes room before "gpu-b"
    # loads; the least recent model, "offloaded", holds no VRAM and stays
    cache.get("gpu-b", loader("gpu-b"), expected_bytes=6)
    assert held_while_loading[-1] == ["offloaded"]
    assert cache.keys() == ["offloaded", "gpu-b"] and cache.used() == {"ram": 8, "vram": 6}
    sizes["offloaded-2"] = {"ram": 3}
    cache.get("offloaded-2", loader("offloaded-2"))  # RAM 11 > 10: "offloaded" goes, the GPU's model stays
    assert cache.keys() == ["gpu-b", "offloaded-2"] and cache.used() == {"ram": 3, "vram": 6}


def test_a_cpu_worker_counts_everything_as_ram() -> None:
    cache: ModelCache[str] = ModelCache({"ram": 10}, size_of=lambda _: {"ram": 4})
    assert cache.budgets == {"ram": 10, "vram": 0}
    cache.get("a", lambda: "a", expected_bytes=4)
    assert cache.used() == {"ram": 4, "vram": 0}
