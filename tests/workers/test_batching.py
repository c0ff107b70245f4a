"""Queued text-to-image jobs that differ only in their prompts run as one batch on the worker, and each still
ends on its own: its own images, seeds and recipe; stopping one stops the batch and the others run again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.jobs import JobStatus
from studio.services import Services, build_services
from tests.conftest import make_config, wait_finished, wait_for
from tests.support.tiny_sd import save_tiny_sd

pytestmark = pytest.mark.slow

TINY = {"width": 64, "height": 64, "num_steps": 3}


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Services]:
    save_tiny_sd(tmp_path / "models" / "tiny-sd")
    services = build_services(make_config(tmp_path / "data", models_dirs=(tmp_path / "models",), max_batch=3))
    services.start()
    yield services
    services.stop()


def busy(studio: Services) -> str:
    """A job that holds the worker while others queue up behind it."""
    job = studio.generation.submit("pattern", "pattern-v1", {"num_steps": 20, "step_delay": 0.05}, 1)
    wait_for(lambda: studio.queue.get(job.id).status is JobStatus.RUNNING, what="the blocking job to start")
    return job.id


def pixels(studio: Services, image_id: str) -> np.ndarray:
    return np.asarray(Image.open(studio.gallery.get(image_id).path), dtype=np.int16)


def test_compatible_waiting_jobs_run_as_one_batch_and_each_keeps_its_own_result(studio: Services) -> None:
    blocker = busy(studio)
    prompts = ["a red apple", "a blue sea", "a green hill", "a grey cat"]
    jobs = [studio.generation.submit("text_to_image", "tiny-sd", {**TINY, "prompt": p}, 10 * i)
            for i, p in enumerate(prompts)]
    other = studio.generation.submit("text_to_image", "tiny-sd", {**TINY, "num_steps": 4, "prompt": "x"}, 5)
    done = [wait_finished(studio, j.id) for j in [*jobs, other]]
    assert wait_finished(studio, blocker).status is JobStatus.COMPLETED
    assert all(j.status is JobStatus.COMPLETED for j in done), [j.error for j in done]
    recipes = [studio.gallery.get(j.image_ids[0]).recipe for j in done]
    assert [r.info.get("batched_with") for r in recipes] == [2, 2, 2, None, None]  # three at most; other steps
    assert [r.seed for r in recipes[:4]] == [0, 10, 20, 30] and [r.params["prompt"] for r in recipes[:4]] == prompts

    again = wait_finished(studio, studio.generation.submit("text_to_image", "tiny-sd",
                                                           {**TINY, "prompt": prompts[1]}, 10).id)
    assert np.abs(pixels(studio, again.image_ids[0]) - pixels(studio, done[1].image_ids[0])).max() <= 2


def test_stopping_one_job_of_a_batch_runs_the_others_again(studio: Services) -> None:
    busy(studio)
    long = {**TINY, "num_steps": 150}
    jobs = [studio.generation.submit("text_to_image", "tiny-sd", {**long, "prompt": p}, i)
            for i, p in enumerate(["one", "two", "three"])]
    wait_for(lambda: all(studio.queue.get(j.id).status is JobStatus.RUNNING for j in jobs), 60,
             "the batch to start")
    wait_for(lambda: studio.queue.get(jobs[1].id).step >= 1, 60, "the batch's first step")
    studio.queue.cancel(jobs[1].id)
    stopped, *others = (wait_finished(studio, j.id, timeout=120) for j in (jobs[1], jobs[0], jobs[2]))
    assert stopped.status is JobStatus.CANCELED
    # run again from the start, the interrupted attempt not counted against them
    assert all(j.status is JobStatus.COMPLETED and j.attempts == 1 for j in others), [j.error for j in others]


def test_one_users_jobs_never_share_a_batch_with_anothers_so_a_stop_touches_only_its_owner(studio: Services) -> None:
    busy(studio)
    long = {**TINY, "num_steps": 150}
    anns = studio.generation.submit("text_to_image", "tiny-sd", {**long, "prompt": "ann's"}, 1, owner="ann")
    bobs = studio.generation.submit("text_to_image", "tiny-sd", {**long, "prompt": "bob's"}, 2, owner="bob")
    wait_for(lambda: studio.queue.get(anns.id).step >= 1, 120, "ann's job to run")
    assert studio.queue.get(bobs.id).status is JobStatus.PENDING  # the same batch key, but not ann's batch
    studio.queue.cancel(anns.id)
    assert wait_finished(studio, anns.id, timeout=120).status is JobStatus.CANCELED
    bob = wait_finished(studio, bobs.id, timeout=180)
    assert bob.status is JobStatus.COMPLETED and bob.attempts == 1  # never interrupted by ann's stop
