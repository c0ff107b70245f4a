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
