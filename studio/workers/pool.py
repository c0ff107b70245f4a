"""WorkerPool: the backend's workers (one per device, or one per Ray actor), each fed by its own dispatcher thread;
the dispatchers share one ModelAffinity, so a model stays on the worker that holds it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from studio.jobs import Job, JobEvents, JobQueue
from studio.workers.backend import WorkerBackend, WorkerHandle
from studio.workers.dispatcher import Dispatcher, ModelAffinity
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
    other_jobs: int = 0  # running jobs left out of current_jobs by `seen_by`: other users'

    def seen_by(self, mine: Callable[[str], bool]) -> WorkerStatus:
        """This status with only the jobs `mine` accepts named; the others counted in `other_jobs`."""
        own = tuple(job for job in self.current_jobs if mine(job))
        return replace(self, current_jobs=own, other_jobs=self.other_jobs + len(self.current_jobs) - len(own))


class WorkerPool:
    def __init__(self, backend: WorkerBackend, queue: JobQueue, events: JobEvents,
                 prepare: Callable[[Job], WorkOrder], deliver: Callable[[Job, Finished], list[str]], *,
                 max_batch: int = 1) -> None:
        self.backend = backend
        self._queue = queue
        affinity = ModelAffinity(queue)
        self._dispatchers = [Dispatcher(h, queue, events, prepare, deliver, max_batch=max_batch, affinity=affinity)
                             for h in backend.handles]
        affinity.dispatchers = list(self._dispatchers)

    def start(self) -> None:
        for d in self._dispatchers:
            d.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking jobs; a running job is asked to stop and goes back to the queue; workers exit."""
        for d in self._dispatchers:
            d.stop()
        self._queue.wake()  # idle dispatchers stop at once, not at the end of their wait
        for d in self._dispatchers:
            if d.ident is not None:  # started
                d.join(timeout)
            d.handle.shutdown(timeout=10.0)
        self.backend.close()
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
