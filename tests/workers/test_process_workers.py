"""Real worker processes: crash isolation, restart and re-queue, stop, and orderly shutdown."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from studio.jobs import JobStatus
from studio.services import Services, build_services
from tests.conftest import make_config, wait_finished, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def studio(tmp_path: Path):
    services = build_services(make_config(tmp_path / "data", in_process_workers=False))
    services.start()
    yield services
    services.stop()


def worker_pid(services: Services) -> int:
    return wait_for(lambda: services.pool.handles[0].alive() and services.pool.handles[0].pid, what="a worker")


def test_kill_9_mid_job_requeues_it_and_a_new_worker_finishes_it(studio: Services) -> None:
    job = studio.generation.submit("pattern", "pattern-v1", {"num_steps": 30, "step_delay": 0.1}, seed=5)
    wait_for(lambda: studio.queue.get(job.id).step >= 2, what="the job to make progress")
    first_pid = worker_pid(studio)
    os.kill(first_pid, signal.SIGKILL)

    requeued = wait_for(lambda: "died from SIGKILL" in ((j := studio.queue.get(job.id)).error or "") and j, timeout=10,
                        what="the job to be re-queued with the reason")
    assert requeued.status in (JobStatus.PENDING, JobStatus.RUNNING)
    done = wait_finished(studio, job.id, timeout=120)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    assert worker_pid(studio) != first_pid and studio.pool.status()[0].restarts == 1
    assert len(studio.gallery.by_job(job.id)) == 1

    nxt = studio.generation.submit("pattern", "pattern-v1", {}, seed=6)
    assert wait_finished(studio, nxt.id, timeout=60).status is JobStatus.COMPLETED


def test_a_job_that_kills_its_worker_twice_fails_with_the_reason(studio: Services) -> None:
    job = studio.generation.submit("pattern", "pattern-v1", {"crash": True}, seed=1)
    done = wait_finished(studio, job.id, timeout=120)
    assert done.status is JobStatus.FAILED
    assert "died from SIGKILL" in done.error and "second time" in done.error
    after = studio.generation.submit("pattern", "pattern-v1", {}, seed=2)
    assert wait_finished(studio, after.id, timeout=120).status is JobStatus.COMPLETED


def test_stop_reaches_the_worker_process(studio: Services) -> None:
    job = studio.generation.submit("pattern", "pattern-v1", {"num_steps": 200, "step_delay": 0.1}, seed=1)
    wait_for(lambda: studio.queue.get(job.id).step >= 1, what="the job to start")
    studio.queue.cancel(job.id)
    assert wait_finished(studio, job.id, timeout=10).status is JobStatus.CANCELED


def test_shutdown_puts_the_running_job_back_for_next_time(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", in_process_workers=False)
    services = build_services(config)
    services.start()
    job = services.generation.submit("pattern", "pattern-v1", {"num_steps": 200, "step_delay": 0.1}, seed=1)
    wait_for(lambda: services.queue.get(job.id).step >= 1, what="the job to start")
    services.stop()

    services = build_services(config)
    try:
        back = services.queue.get(job.id)
        assert back.status is JobStatus.PENDING and back.attempts == 0
        assert services.gallery.by_job(job.id) == []  # nothing half-written
    finally:
        services.stop()
