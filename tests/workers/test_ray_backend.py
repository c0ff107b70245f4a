"""The Ray backend on a local Ray instance: an actor lost mid-job, model affinity across two actors, the actors a GPU
cluster gets, and the local backend's independence from Ray. (The spine's job tests run on it too:
test_dispatch.py; every pipeline through the API: tests/api/test_native.py.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.jobs import JobEvent, JobStatus
from studio.services import Services, build_services
from studio.workers.backend import ThreadWorker, WorkerBackend, WorkerHandle
from tests.conftest import make_config, wait_finished, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_cluster")]

ROOT = Path(__file__).parents[2]


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Services]:
    services = build_services(make_config(tmp_path / "data", backend="ray"))
    services.start()
    yield services
    services.stop()


def running_job(studio: Services, seed: int) -> str:
    job = studio.generation.submit("pattern", "pattern-v1", {"num_steps": 30, "step_delay": 0.1}, seed=seed)
    wait_for(lambda: studio.queue.get(job.id).step >= 2, what="the job to make progress")
    return job.id


def test_an_actor_lost_mid_job_is_recreated_and_its_job_requeued_once(studio: Services) -> None:
    import ray

    handle = studio.pool.handles[0]
    assert wait_for(lambda: handle.alive() and handle.device.startswith("cpu on "), what="the actor's placement")
    first_actor = handle.actor

    # the actor's process ends, as when its node is lost: Ray recreates the same actor, which finishes the job
    job_id = running_job(studio, seed=5)
    ray.kill(first_actor, no_restart=False)
    requeued = wait_for(lambda: "was lost" in ((j := studio.queue.get(job_id)).error or "") and j, timeout=20,
                        what="the job to be re-queued with the reason")
    assert requeued.status in (JobStatus.PENDING, JobStatus.RUNNING)
    done = wait_finished(studio, job_id, timeout=120)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    assert handle.actor._actor_id == first_actor._actor_id and studio.pool.status()[0].restarts == 1

    # killed for good (no restart): the studio makes a new actor in its place
    job_id = running_job(studio, seed=6)
    ray.kill(handle.actor)
    done = wait_finished(studio, job_id, timeout=120)
    assert done.status is JobStatus.COMPLETED and done.attempts == 2
    assert handle.actor._actor_id != first_actor._actor_id and studio.pool.status()[0].restarts == 2

    # nothing lost, nothing twice: one picture for each job, written by the studio
    assert [len(studio.gallery.by_job(j.id)) for j in studio.queue.list()] == [1, 1]


class TwoThreads(WorkerBackend):
    """Two in-process workers on the CPU: the local backend's counterpart of two actors."""

    name = "local"

    def __init__(self, services_config) -> None:
        self._handles: list[WorkerHandle] = [
            ThreadWorker(f"cpu{i}", "cpu", services_config.memory_budget, services_config.device_options)
            for i in range(2)]

    @property
    def handles(self) -> list[WorkerHandle]:
        return self._handles

    def close(self) -> None:
        pass


@pytest.mark.parametrize("backend", ["local", "ray"])
def test_two_workers_keep_each_model_on_one_of_them(backend: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "local":
        monkeypatch.setattr("studio.services.worker_backend", TwoThreads)
    services = build_services(make_config(tmp_path / "data", backend=backend, ray_workers=2))
    loads: list[str] = []
    publish = services.events.publish

    def record(event: JobEvent) -> None:
        if event.message.startswith("Loading "):
            loads.append(event.job_id)
        publish(event)

    services.events.publish = record  # type: ignore[method-assign]
    services.start()
    try:
        # a model's jobs in a row: without affinity both workers would load each model in turn
        params = {"num_steps": 4, "step_delay": 0.1}
        jobs = [services.generation.submit("pattern", model, params, seed=i)
                for i, model in enumerate(["pattern-v1"] * 3 + ["pattern-v2"] * 3)]
        done = [wait_finished(services, job.id, timeout=120) for job in jobs]
    finally:
        services.stop()
    assert all(job.status is JobStatus.COMPLETED for job in done)
    assert len(loads) == 2  # each model loaded once
    v1, v2 = ({job.worker for job in done if job.spec.model == model} for model in ("pattern-v1", "pattern-v2"))
    assert len(v1) == len(v2) == 1 and v1 != v2  # and on one worker each


def test_each_actor_takes_a_gpu_where_the_cluster_has_them(caplog: pytest.LogCaptureFixture) -> None:
    from studio.workers.ray_backend import plan_actors

    four_gpus = {"CPU": 64.0, "GPU": 4.0, "memory": 2e11}
    assert plan_actors(four_gpus, 0, 1.0) == (4, {"num_cpus": 1.0, "num_gpus": 1})
    assert plan_actors(four_gpus, 2, 1.0) == (2, {"num_cpus": 1.0, "num_gpus": 1})
    assert plan_actors({"CPU": 16.0}, 0, 8.0) == (1, {"num_cpus": 8.0, "num_gpus": 0})
    assert "need more than the cluster has now" not in caplog.text
    assert plan_actors(four_gpus, 6, 1.0)[0] == 6  # two wait for GPUs to join, as Ray queues them
    assert "6 worker actor(s) need more than the cluster has now (64.0 CPUs, 4 GPUs)" in caplog.text


def test_the_local_backend_needs_no_ray_and_the_ray_backend_says_how_to_install_it(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        sys.modules["ray"] = None  # as if Ray were not installed: importing it raises ImportError
        from studio.services import build_services
        from tests.conftest import make_config, wait_finished
        services = build_services(make_config(Path({str(tmp_path / "a")!r})))
        services.start()
        job = services.generation.submit("pattern", "pattern-v1", {{}}, seed=1)
        print(wait_finished(services, job.id).status.value)
        services.stop()
        try:
            build_services(make_config(Path({str(tmp_path / "b")!r}), backend="ray"))
        except ValueError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "completed", '--backend ray needs Ray, which is not installed here: pip install "atelier[ray]"']
