"""The model cache keeps models between jobs and evicts the least recently used beyond its byte budget."""

from __future__ import annotations

from studio.workers.cache import ModelCache


def test_reuses_loaded_models_and_evicts_least_recently_used() -> None:
    loaded: list[str] = []

    def loader(name: str):
        return lambda: loaded.append(name) or name

    cache: ModelCache[str] = ModelCache(budget_bytes=10, size_of=lambda _: 4)
    cache.get("a", loader("a"))
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # hit: "a" becomes most recent
    cache.get("c", loader("c"))  # 12 bytes > 10: the least recent, "b", goes
    assert loaded == ["a", "b", "c"] and cache.keys() == ["a", "c"] and cache.used_bytes == 8
    assert cache.loads == 3


def test_a_model_bigger_than_the_budget_is_kept_alone() -> None:
    cache: ModelCache[str] = ModelCache(budget_bytes=10, size_of=lambda v: 50 if v == "huge" else 4)
    cache.get("small", lambda: "small")
    cache.get("huge", lambda: "huge")
    assert cache.keys() == ["huge"]


def test_an_expected_size_makes_room_before_the_model_loads() -> None:
    cache: ModelCache[str] = ModelCache(budget_bytes=10, size_of=lambda _: 4)
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
    cache: ModelCache[str] = ModelCache(budget_bytes=10, size_of=lambda v: sizes[v])
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
    cache: ModelCache[str] = ModelCache(budget_bytes=10, size_of=lambda v: sizes[v])
    cache.get("grows", lambda: "grows")
    sizes["grows"] = 8  # e.g. style transfer loading a mode's networks on its first run
    held_while_loading: list[list[str]] = []
    cache.get("b", lambda: held_while_loading.append(cache.keys()) or "b", expected_bytes=4)
    assert held_while_loading == [[]] and cache.keys() == ["b"]


def test_an_expected_size_beyond_the_budget_empties_the_cache_first() -> None:
    cache: ModelCache[str] = ModelCache(budget_bytes=10, size_of=lambda v: 50 if v == "huge" else 4)
    cache.get("small", lambda: "small")
    held_while_loading: list[list[str]] = []
    cache.get("huge", lambda: held_while_loading.append(cache.keys()) or "huge", expected_bytes=50)
    assert held_while_loading == [[]] and cache.keys() == ["huge"]
    cache.get("small", lambda: "small")  # the next model makes room by its known size: "huge" goes first
    assert cache.keys() == ["small"] and cache.used_bytes == 4
