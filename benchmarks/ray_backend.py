"""The Ray backend against the local one in the same run: what a job's round trip costs when its worker is a Ray
actor instead of a local worker process, and how long a job takes to finish when its worker is lost mid-job.

Two studios share the run, one per backend, each with one CPU worker. The round trip is a bundled-GAN job of 4
pictures (atelier-emoji-gan: little work, so the figure is mostly the trip: queue → worker → messages → gallery),
alternating between the studios. The loss is a 40-step job of the bundled text-to-image model whose worker is
killed at its first step: SIGKILL for the local process, `ray.kill` (restart allowed, as when a process or machine
is lost) for the actor. The actor runs on a Ray instance this benchmark starts on this machine, so the trip is
Ray's, not a network's.

Run: `python -m benchmarks.ray_backend --quick` (about a minute) or `--full`; writes
benchmarks/results/ray_backend.md.
"""

from __future__ import annotations

import os
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import Row, parse_quick, rows_markdown, write_report
from studio.config import StudioConfig
from studio.jobs import JobStatus
from studio.services import Services, build_services

JOB = ("gan", "atelier-emoji-gan", {"num_images": 4})  # little work: the figure is mostly the trip
SLOW_JOB = ("text_to_image", "atelier-emoji-diffusion", {"prompt": "a red heart", "num_steps": 40})  # killed mid-job


@dataclass(frozen=True)
class Sizes:
    jobs: int  # per backend, alternating
    kills: int  # lost-worker runs per backend


QUICK = Sizes(jobs=10, kills=1)
FULL = Sizes(jobs=40, kills=3)


def finish(services: Services, job: tuple[str, str, dict], seed: int, *,
           on_start: Callable[[], None] | None = None) -> float:
    """Seconds from submitting a job to its completion (the queue's record), polling at 5 ms; `on_start` is called
    once the job has made its first step."""
    start = time.perf_counter()
    pipeline, model, params = job
    job = services.generation.submit(pipeline, model, params, seed=seed)
    started = False
    while not (current := services.queue.get(job.id)).status.finished:
        if on_start is not None and not started and current.status is JobStatus.RUNNING and current.step:
            started = True
            on_start()
        time.sleep(0.005)
    if current.status is not JobStatus.COMPLETED:
        raise RuntimeError(f"job {job.id} {current.status.value}: {current.error}")
    return time.perf_counter() - start


def kill_local(services: Services) -> None:
    os.kill(services.pool.handles[0].pid, signal.SIGKILL)


def kill_actor(services: Services) -> None:
    import ray

    ray.kill(services.pool.handles[0].actor, no_restart=False)  # as when its process or machine is lost


def rows(quick: bool) -> list[Row]:
    import ray

    sizes = QUICK if quick else FULL
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False)
    studios: dict[str, Services] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="atelier-bench-ray-") as tmp:
            for backend in ("local", "ray"):
                config = StudioConfig(data_dir=Path(tmp) / backend, devices="auto", open_browser=False,
                                      log_level="warning", backend=backend)
                studios[backend] = build_services(config)
                studios[backend].start()
                finish(studios[backend], JOB, 0)  # the worker starts and loads the models
                finish(studios[backend], SLOW_JOB, 0)
            trips: dict[str, list[float]] = {name: [] for name in studios}
            for seed in range(1, sizes.jobs + 1):
                for name, services in studios.items():
                    trips[name].append(finish(services, JOB, seed))
            alone = {name: statistics.median(finish(s, SLOW_JOB, 100 + i) for i in range(sizes.kills))
                     for name, s in studios.items()}
            lost = {"local": statistics.median(finish(studios["local"], SLOW_JOB, 200 + i,
                                                      on_start=lambda: kill_local(studios["local"]))
                                               for i in range(sizes.kills)),
                    "ray": statistics.median(finish(studios["ray"], SLOW_JOB, 200 + i,
                                                    on_start=lambda: kill_actor(studios["ray"]))
                                             for i in range(sizes.kills))}
            for services in studios.values():
                services.stop()
    finally:
        ray.shutdown()
    local, actor = statistics.median(trips["local"]), statistics.median(trips["ray"])
    extra = actor - local
    recover_local, recover_ray = lost["local"] - alone["local"], lost["ray"] - alone["ray"]
    return [
        Row(f"GAN job round trip ({JOB[2]['num_images']} pictures) on a Ray actor",
            "the same job on a local worker process",
            f"{actor * 1000:.0f} ms vs {local * 1000:.0f} ms: {extra * 1000:+.0f} ms", "≤ +50 ms a job",
            extra <= 0.050, local / actor,
            f"median of {sizes.jobs} jobs each, alternating; the pictures come back through Ray's object store"),
        Row(f"a text-to-image job ({SLOW_JOB[2]['num_steps']} steps) whose worker is lost mid-job (re-queued, run "
            "again)",
            "the same loss of a local worker process (SIGKILL)",
            f"Ray actor: +{recover_ray:.1f} s, local process: +{recover_local:.1f} s over the job alone",
            "reported", None, (lost["local"] / lost["ray"]),
            "the extra time is the new worker's start (a Ray actor's process, or a spawned one) and the model load"),
    ]


def report(result: list[Row], quick: bool) -> str:
    sizes = QUICK if quick else FULL
    lines = ["# The Ray backend against local worker processes (bundled models, CPU)", "",
             f"One worker per backend, a local Ray instance of 2 CPUs; {sizes.jobs} alternating jobs per backend, "
             f"{sizes.kills} lost-worker run(s) each.", "",
             *rows_markdown(result)]
    return "\n".join(lines) + "\n"


def main() -> None:
    quick = parse_quick(__doc__, f"{QUICK.jobs} jobs per backend", f"{FULL.jobs} jobs per backend")
    write_report("ray_backend", report(rows(quick), quick))


if __name__ == "__main__":
    main()
