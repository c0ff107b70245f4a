"""200 jobs from 20 clients over HTTP while the worker process is SIGKILLed three times and the studio restarts:
every job ends completed, or failed with its reason; none is lost; none is saved twice; every saved artwork is
exactly one record with its files, and every file in the gallery belongs to a record."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from studio.jobs import JobStatus
from studio.services import Services
from tests.conftest import make_config, wait_for
from tests.ui.serving import serve_http

pytestmark = pytest.mark.slow

JOBS, CLIENTS, KILLS = 200, 20, 3


class Clients:
    """CLIENTS threads submitting JOBS jobs in all, each retrying while the studio is down or restarting."""

    def __init__(self) -> None:
        self.url = ""
        self.ids: list[str] = []
        self.wanted: dict[str, int] = {}  # job id → images it asked for
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(CLIENTS)]

    def _run(self, client: int) -> None:
        with httpx.Client(timeout=30) as http:
            for i in range(JOBS // CLIENTS):
                images = 1 + (client + i) % 2
                body = {"pipeline": "pattern", "seed": client * 1000 + i,
                        "params": {"num_images": images, "num_steps": 3, "step_delay": 0.02}}
                while True:
                    try:
                        response = http.post(self.url + "api/v1/jobs", json=body)
                        if response.status_code == 202:
                            break
                    except httpx.TransportError:
                        pass  # the studio is restarting: try again, as a client would
                    time.sleep(0.2)
                with self._lock:
                    self.ids.append(response.json()["id"])
                    self.wanted[self.ids[-1]] = images
                time.sleep(random.random() * 0.05)


def kill_the_worker(services: Services) -> None:
    handle = services.pool.handles[0]
    pid = wait_for(lambda: handle.alive() and handle.pid, 60, "a live worker")
    os.kill(pid, signal.SIGKILL)


def test_no_job_is_lost_or_saved_twice_through_kills_and_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", in_process_workers=False, max_queue=JOBS, max_queue_per_user=JOBS)
    clients = Clients()
    chance = random.Random(11)
    with serve_http(config) as (services, url):
        clients.url = url
        for thread in clients.threads:
            thread.start()
        for _ in range(KILLS):  # at random moments, mostly mid-job
            time.sleep(chance.uniform(0.5, 2.0))
            kill_the_worker(services)
        wait_for(lambda: len(clients.ids) >= JOBS // 2, 120, "half the jobs to be submitted")
    # the studio is down (a running job went back to the queue); clients keep trying until it is back
    time.sleep(1.0)
    with serve_http(config) as (services, url):
        clients.url = url
        for thread in clients.threads:
            thread.join(timeout=120)
        assert len(clients.ids) == JOBS and len(set(clients.ids)) == JOBS

        def all_finished() -> bool:
            return all(services.queue.get(i).status.finished for i in clients.ids)
        wait_for(all_finished, 300, "every job to finish")

        jobs = [services.queue.get(i) for i in clients.ids]
        failed = [j for j in jobs if j.status is JobStatus.FAILED]
        assert all(j.status in (JobStatus.COMPLETED, JobStatus.FAILED) for j in jobs)
        assert all(j.error for j in failed), [j.error for j in failed]
        assert len(failed) <= KILLS  # only a job killed twice fails; the others re-ran

        root = services.gallery.root
        records = [a for j in jobs for a in services.gallery.by_job(j.id)]
        for job in jobs:
            saved = services.gallery.by_job(job.id)
            assert sorted(a.id for a in saved) == sorted(job.image_ids)  # the job names what the gallery holds
            assert sorted(a.recipe.index for a in saved) == list(range(len(saved)))  # each image once
            if job.status is JobStatus.COMPLETED:
                assert len(saved) == clients.wanted[job.id]
        assert len({a.id for a in records}) == len(records)
        for artwork in records:
            assert artwork.path.is_file() and artwork.thumb_path.is_file()
        on_disk = {p for p in (root / "images").rglob("*") if p.is_file()}
        assert on_disk == {a.path for a in records}  # no file without its record, no temp file left
        assert {p for p in (root / "thumbs").rglob("*") if p.is_file()} == {a.thumb_path for a in records}
        assert sum(1 for j in jobs if j.attempts > 1) >= 1  # the faults did hit running jobs
