"""Model affinity: which pending jobs an idle worker leaves to the worker that holds their model."""

from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

from studio.jobs import JobSpec, SqliteJobQueue
from studio.workers.dispatcher import AFFINITY_WAIT_S, ModelAffinity


def worker(name: str, loaded: tuple[str, ...] = ()) -> SimpleNamespace:
    """What ModelAffinity reads of a dispatcher."""
    w = SimpleNamespace(handle=SimpleNamespace(name=name), loaded=loaded, current_model=None, busy_since=None)
    w.models = lambda: {*w.loaded, w.current_model} - {None}
    return w


def test_an_idle_worker_leaves_a_held_models_jobs_to_its_holder_until_it_has_been_busy_too_long(
        tmp_path: Path) -> None:
    queue = SqliteJobQueue(tmp_path / "jobs.db")
    first_a, first_b, second_a = (queue.enqueue(JobSpec("pattern", model, {}, seed=i))
                                  for i, model in enumerate(["a", "b", "a"]))
    holder, other = worker("gpu0", loaded=("a",)), worker("gpu1")
    affinity = ModelAffinity(queue)
    affinity.dispatchers = [holder, other]

    assert affinity.claim(other).id == first_b.id  # the older job is a's: left to gpu0, which holds a
    assert other.models() == {"b"} and other.busy_since is not None  # and b is now gpu1's while it loads
    assert affinity.claim(holder).id == first_a.id
    holder.busy_since = time.monotonic() - AFFINITY_WAIT_S  # gpu0 has been on its job too long to wait for
    other.current_model, other.busy_since = None, None
    assert affinity.claim(other).id == second_a.id
    queue.close()


def test_with_one_worker_or_a_model_nobody_holds_the_queue_order_stands(tmp_path: Path) -> None:
    queue = SqliteJobQueue(tmp_path / "jobs.db")
    jobs = [queue.enqueue(JobSpec("pattern", model, {}, seed=i)) for i, model in enumerate(["a", "b"])]
    alone = worker("cpu", loaded=("b",))
    affinity = ModelAffinity(queue)
    affinity.dispatchers = [alone]
    assert affinity.claim(alone).id == jobs[0].id  # nobody else could take a's job: no waiting for b's
    queue.close()
