"""The job queue's contract. One implementation today (SQLite); the API and workers only see this."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection

from studio.jobs.models import Job, JobSpec, JobStatus


class JobQueue(ABC):
    @abstractmethod
    def enqueue(self, spec: JobSpec) -> Job:
        """Store a pending job; raises QueueFull when the queue is at its bound."""

    @abstractmethod
    def claim(self, worker: str, pipelines: Collection[str] | None = None, *,
              leave_models: Collection[str] = ()) -> Job | None:
        """Atomically take the next pending job (highest priority, then oldest) and mark it running, passing over
        jobs for `leave_models` (models another worker holds: model affinity)."""

    @abstractmethod
    def claim_batch(self, worker: str, job: Job, limit: int) -> list[Job]:
        """After claiming `job`: up to `limit` more pending jobs that may run in one batch with it, marked running."""

    @abstractmethod
    def get(self, job_id: str) -> Job:
        """The job, or JobNotFound."""

    @abstractmethod
    def list(self, *, owner: str | None = None, statuses: Collection[JobStatus] | None = None,
             limit: int = 100) -> list[Job]:
        """Newest first."""

    @abstractmethod
    def position(self, job_id: str) -> int:
        """How many pending jobs run before this one (0: next); -1 when it is not pending."""

    @abstractmethod
    def set_progress(self, job_id: str, step: int, total: int) -> None: ...

    @abstractmethod
    def complete(self, job_id: str, image_ids: list[str]) -> Job: ...

    @abstractmethod
    def fail(self, job_id: str, error: str, image_ids: list[str] | None = None) -> Job:
        """Failed with the reason; `image_ids`: artworks it did save before failing (kept, and listed)."""

    @abstractmethod
    def cancel(self, job_id: str) -> Job:
        """Pending → canceled at once; running → cancel requested (the worker stops between steps)."""

    @abstractmethod
    def mark_canceled(self, job_id: str) -> Job:
        """A running job's worker has stopped on request."""

    @abstractmethod
    def release(self, job_id: str, reason: str) -> Job:
        """A running job lost its worker: back to pending once, failed with `reason` the second time."""

    @abstractmethod
    def return_to_queue(self, job_id: str, *, alone: bool = False) -> Job:
        """A running job interrupted by an orderly shutdown, or because another job of its batch was stopped:
        pending again, the attempt not counted. With `alone`, it is never batched again, so stopping batch-mates
        can send it back at most once."""

    @abstractmethod
    def wait_for_work(self, timeout: float) -> None:
        """Block until a job may have been enqueued, or `timeout` seconds."""

    @abstractmethod
    def wake(self) -> None:
        """End every wait_for_work now (a job was enqueued or re-queued, or the studio is stopping)."""

    @abstractmethod
    def pending_count(self, owner: str | None = None) -> int: ...

    @abstractmethod
    def params_containing(self, fragment: str) -> list[str]:
        """The params (as JSON) of every job, in any state, whose params contain `fragment`."""

    @abstractmethod
    def recover(self) -> list[Job]:
        """On start: release every job left running by a previous server; returns them."""
