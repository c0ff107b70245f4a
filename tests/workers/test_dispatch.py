"""Jobs through the whole spine, submit → queue → worker → gallery, on each worker backend: a worker thread of the
studio (local), and a Ray actor on a local Ray instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from pipelines.catalog import UnknownModel, UnknownPipeline
from studio.gallery import metadata
from studio.jobs import JobStatus
from studio.services import Services, build_services
from tests.conftest import make_config, wait_finished, wait_for

EDGE_ONLY = pytest.mark.parametrize("studio", ["local"], indirect=True)  # refused before any worker: one backend


@pytest.fixture(params=["local", pytest.param("ray", marks=pytest.mark.slow)])
def studio(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Services]:
    if request.param == "ray":
        request.getfixturevalue("ray_cluster")
    services = build_services(make_config(tmp_path / "data", backend=request.param))
    services.start()
    yield services
    services.stop()


def test_job_lands_in_the_gallery_with_its_recipe(studio: Services) -> None:
    job = studio.generation.submit("pattern", "pattern-v1", {"prompt": "a red fox", "num_images": 2}, seed=42)
    events = list(studio.generation.follow(job.id))
    done = studio.queue.get(job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert len(done.image_ids) == 2
    progress = [e for e in events if getattr(e, "kind", None) == "progress"]
    assert progress[0].message == "Loading builtin:pattern" and progress[0].total == 0  # model load status
    steps = [e for e in progress if e.total]
    assert [e.step for e in steps] == list(range(1, 9)) and steps[-1].preview is not None
    first = studio.gallery.get(done.image_ids[0])
    assert first.recipe.seed == 42 and studio.gallery.get(done.image_ids[1]).recipe.seed == 43
    assert first.recipe.params["prompt"] == "a red fox" and first.recipe.model_hash == "0123abcd"
    text = metadata.read_png_text(first.path)
    assert text["parameters"].startswith("a red fox\n") and "Seed: 42" in text["parameters"]
    assert metadata.read_recipe(first.path) == first.recipe


def test_same_params_and_seed_give_the_same_pixels(studio: Services) -> None:
    ids = []
    for _ in range(2):
        job = studio.generation.submit("pattern", "pattern-v1", {"palette": "cool"}, seed=7)
        ids.append(wait_finished(studio, job.id).image_ids[0])
    a, b = (Image.open(studio.gallery.get(i).path) for i in ids)
    assert a.tobytes() == b.tobytes()


@EDGE_ONLY
def test_unknown_pipeline_or_model_is_refused_before_the_queue(studio: Services) -> None:
    with pytest.raises(UnknownPipeline, match="unknown pipeline 'sketch'"):
        studio.generation.submit("sketch", "pattern-v1", {})
    with pytest.raises(UnknownModel, match="unknown model 'nope' for pattern; available: pattern-v1, pattern-v2"):
        studio.generation.submit("pattern", "nope", {})
    assert studio.queue.list() == []


@EDGE_ONLY
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"width": 500}, "`width` and `height` must be divisible by 8, got 500x64"),
        ({"num_steps": 0}, "`num_steps` must be at least 1, got 0"),
        ({"num_images": "many"}, "`num_images` must be a number, got 'many'"),
        ({"step_delay": float("nan")}, "`step_delay` must be a finite number"),
        ({"palette": "neon"}, "`palette` must be one of 'warm', 'cool', got 'neon'"),
        ({"colour": 1}, "unknown parameter `colour`"),
        ({"prompt": "x" * 200_000}, "params are too large"),
    ],
)
def test_bad_params_name_the_field_and_enqueue_nothing(studio: Services, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        studio.generation.submit("pattern", "pattern-v1", params)
    assert studio.queue.list() == []


@EDGE_ONLY
@pytest.mark.parametrize("seed", [-2, 2**32, 1.5, "7"])
def test_bad_seed_is_refused(studio: Services, seed: object) -> None:
    with pytest.raises(ValueError, match="`seed`"):
        studio.generation.submit("pattern", "pattern-v1", {}, seed=seed)


def test_random_seed_is_resolved_and_recorded(studio: Services) -> None:
    job = studio.generation.submit("pattern", "pattern-v1", {}, seed=-1)
    assert 0 <= job.spec.seed < 2**32
    done = wait_finished(studio, job.id)
    assert studio.gallery.get(done.image_ids[0]).recipe.seed == job.spec.seed


def test_stop_a_running_job(studio: Services) -> None:
    job = studio.generation.submit("pattern", "pattern-v1", {"num_steps": 200, "step_delay": 0.05}, seed=1)
    wait_for(lambda: studio.queue.get(job.id).step >= 2, what="the job to make progress")
    studio.queue.cancel(job.id)
    done = wait_finished(studio, job.id, timeout=10)
    assert done.status is JobStatus.CANCELED and done.image_ids == []
    assert studio.gallery.by_job(job.id) == []
    nxt = studio.generation.submit("pattern", "pattern-v1", {}, seed=2)  # the worker is free again
    assert wait_finished(studio, nxt.id).status is JobStatus.COMPLETED


def test_cancel_a_pending_job_ends_its_follow(studio: Services) -> None:
    blocker = studio.generation.submit("pattern", "pattern-v1", {"num_steps": 40, "step_delay": 0.05}, seed=1)
    wait_for(lambda: studio.queue.get(blocker.id).status is JobStatus.RUNNING, what="the first job to start")
    waiting = studio.generation.submit("pattern", "pattern-v1", {}, seed=2)
    assert studio.queue.position(waiting.id) == 0
    studio.queue.cancel(waiting.id)
    last = list(studio.generation.follow(waiting.id))[-1]
    assert last.kind == "canceled" and last.final  # the hub never saw it: the stored state, as the same event
    studio.queue.cancel(blocker.id)


def test_a_pipeline_error_fails_the_job_and_the_worker_goes_on(studio: Services) -> None:
    job = studio.generation.submit("pattern", "pattern-v1", {"fail": "the brush snapped"}, seed=1)
    done = wait_finished(studio, job.id)
    assert done.status is JobStatus.FAILED and done.error == "RuntimeError: the brush snapped"
    again = studio.generation.submit("pattern", "pattern-v1", {}, seed=1)
    assert wait_finished(studio, again.id).status is JobStatus.COMPLETED
