"""WorkerPool: one worker per device, each fed by its own dispatcher thread."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from studio.jobs import Job, JobEvents, JobQueue
from studio.workers.backend import ProcessWorker, ThreadWorker, WorkerHandle
from studio.workers.cache import MemoryBudget
from studio.workers.dispatcher import Dispatcher
from studio.workers.protocol import Finished, MemoryUse, WorkOrder

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerStatus:
    name: str
    device: str
    alive: bool
    current_jobs: tuple[str, ...]  # the job it runs, or the jobs of the batch it runs; empty when idle
    restarts: int
    loaded: tuple[str, ...]  # model ids in the worker's memory
    memory: MemoryUse | None  # what they hold against the worker's budgets (None until its first job ends)


def make_handles(devices: list[str], *, budget: MemoryBudget, log_level: int, in_process: bool,
                 device_options: dict[str, Any]) -> list[WorkerHandle]:
    handles: list[WorkerHandle] = []
    for device in devices:
        name = device.replace(":", "")
        if in_process:
            handles.append(ThreadWorker(name, device, budget, device_options))
        else:
            handles.append(ProcessWorker(name, device, budget, log_level, device_options))
    return handles


class WorkerPool:
    def __init__(self, handles: list[WorkerHandle], queue: JobQueue, events: JobEvents,
                 prepare: Callable[[Job], WorkOrder], deliver: Callable[[Job, Finished], list[str]], *,
                 max_batch: int = 1) -> None:
        self._dispatchers = [Dispatcher(h, queue, events, prepare, deliver, max_batch=max_batch) for h in handles]

    def start(self) -> None:
        for d in self._dispatchers:
            d.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a running job is asked to stop and goes back to the queue; workers exit."""
        for d in self._dispatchers:
            d.stop()
        for d in self._dispatchers:
            if d.ident is not None:  # started
                d.join(timeout)
            d.handle.shutdown(timeout=10.0)
        logger.info("workers stopped")

    def status(self) -> list[WorkerStatus]:
        return [WorkerStatus(d.handle.name, d.handle.device, d.handle.alive(), d.current_jobs, d.restarts, d.loaded,
                             d.memory) for d in self._dispatchers]

    def loaded_models(self) -> set[str]:
        """The model ids some worker holds in memory: a job on one of them starts without loading."""
        return {model for d in self._dispatchers for model in d.loaded}

    @property
    def handles(self) -> list[WorkerHandle]:
        return [d.handle for d in self._dispatchers]
