"""Jobs as the queue stores them: what was asked (JobSpec) and where it stands (Job, JobStatus)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class JobStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED)


class JobError(RuntimeError):
    """Base of the queue's errors; messages are meant for the user."""


class QueueFull(JobError):
    def __init__(self, ahead: int, *, per_owner: bool = False) -> None:
        if per_owner:
            super().__init__(f"queue full for you: {ahead} of your jobs are waiting, the most one user may have; "
                             "try again when some have finished")
        else:
            super().__init__(f"queue full, {ahead} jobs ahead; try again when some have finished")
        self.ahead = ahead


class JobNotFound(JobError, KeyError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job {job_id}")
        self.job_id = job_id

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True)
class JobSpec:
    """A validated request: the edge (UI or API) builds it, the queue stores it, a worker runs it."""

    pipeline: str  # pipeline kind, e.g. "text_to_image"
    model: str  # catalogue id
    params: dict[str, Any]  # the pipeline's Params as plain JSON values
    seed: int  # already resolved: -1 ("random") becomes a concrete seed before enqueueing
    owner: str = "local"
    priority: int = 0  # higher runs first; equal priorities run in submission order
    batch_key: str | None = None  # pending jobs with the same key may run as one batch (None: alone)
    # the catalogue entry the model resolved to at submit (ModelEntry.recorded): the worker loads exactly this, and
    # the recipe names its hash and licence, whatever a rescan changes meanwhile; None for jobs from older versions
    model_entry: dict[str, Any] | None = None
    styles: tuple[str, ...] = ()  # the prompt styles applied at submit (params hold the expanded prompts)


@dataclass(frozen=True)
class Job:
    id: str
    spec: JobSpec
    status: JobStatus
    progress: float = 0.0  # 0..1
    step: int = 0
    total_steps: int = 0
    attempts: int = 0  # times a worker has claimed it; a second interruption fails it
    worker: str | None = None
    error: str | None = None
    image_ids: list[str] = field(default_factory=list)
    cancel_requested: bool = False
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def owner(self) -> str:
        return self.spec.owner
