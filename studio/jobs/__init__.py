"""The durable job queue: JobSpec in, Jobs claimed by workers, status and progress out."""

from __future__ import annotations

from studio.jobs.events import JobEvent, JobEvents
from studio.jobs.models import Job, JobError, JobNotFound, JobSpec, JobStatus, QueueFull
from studio.jobs.queue import JobQueue
from studio.jobs.sqlite_queue import SqliteJobQueue

__all__ = ["Job", "JobError", "JobEvent", "JobEvents", "JobNotFound", "JobQueue", "JobSpec", "JobStatus",
           "QueueFull", "SqliteJobQueue"]
