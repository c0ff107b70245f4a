"""Shared fixtures: a studio on a temporary data dir with the test pattern pipeline as a plugin."""

from __future__ import annotations

import os

# Tests never touch the network: the hub client must answer from the (test-made) cache or fail at once.
# Set before anything imports huggingface_hub, which reads these once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from studio.config import StudioConfig
from studio.jobs import Job
from studio.services import Services, build_services

PLUGIN = "tests.support.pattern"


def make_config(data_dir: Path, **changes: object) -> StudioConfig:
    values: dict[str, object] = {"data_dir": data_dir, "devices": "cpu", "plugins": (PLUGIN,), "open_browser": False,
                                 "in_process_workers": True, "log_level": "warning"}
    values.update(changes)
    return StudioConfig(**values)


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[Services]:
    """Services with an in-process worker, started."""
    services = build_services(make_config(tmp_path / "data"))
    services.start()
    yield services
    services.stop()


@pytest.fixture(scope="session", autouse=True)
def no_studio_outlives_the_tests() -> Iterator[None]:
    """Whatever a test's outcome, every studio process it launched is gone when the session ends."""
    yield
    from tests.support.launched import stop_all

    stop_all()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    """A Ray instance on this machine for the Ray backend's tests (as `ray start --head` would make, but owned by the
    test session): two CPUs, no dashboard. Studios built on it leave it running when they stop."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False,
             namespace="atelier-tests")
    yield
    ray.shutdown()


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_finished(services: Services, job_id: str, timeout: float = 60.0) -> Job:
    return wait_for(lambda: (j := services.queue.get(job_id)).status.finished and j, timeout, f"job {job_id}")
