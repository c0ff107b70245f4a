"""JobEvents: the in-process hub through which workers' progress reaches the UI and API.

Progress from worker processes cannot be seen by Gradio's track_tqdm, so the dispatcher publishes each
event here; a UI handler or API call subscribes to one job. The hub keeps each job's latest event, so a
late subscriber still sees where the job stands.
"""

from __future__ import annotations

import queue
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from PIL import Image

    from studio.jobs.models import Job

# "waiting": the hub was silent and the queue says the job has not finished (its message: "pending" or "running")
EventKind = Literal["started", "progress", "completed", "failed", "canceled", "requeued", "waiting"]
FINAL_KINDS = ("completed", "failed", "canceled")
RETAINED_JOBS = 512  # latest events kept for this many jobs; older ones are read from the queue instead


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    kind: EventKind
    step: int = 0
    total: int = 0
    preview: Image.Image | None = None
    message: str = ""
    image_ids: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.kind in FINAL_KINDS

    @classmethod
    def of_state(cls, job: Job) -> JobEvent:
        """A job's stored state as an event: the final event a follower may have missed (a job canceled while
        pending, or finished before the follower subscribed) in the very shape the hub sends, or "waiting"."""
        if job.status.finished:
            return cls(job.id, str(job.status), job.step, job.total_steps, message=job.error or "",  # type: ignore[arg-type]
                       image_ids=list(job.image_ids))
        return cls(job.id, "waiting", job.step, job.total_steps, message=str(job.status))


class JobEvents:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: dict[str, list[queue.SimpleQueue[JobEvent]]] = {}
        self._latest: OrderedDict[str, JobEvent] = OrderedDict()

    def publish(self, event: JobEvent) -> None:
        with self._lock:
            self._latest[event.job_id] = event
            self._latest.move_to_end(event.job_id)
            while len(self._latest) > RETAINED_JOBS:
                self._latest.popitem(last=False)
            for q in self._subscribers.get(event.job_id, []):
                q.put(event)

    def latest(self, job_id: str) -> JobEvent | None:
        """The job's most recent event, if the hub still holds it."""
        with self._lock:
            return self._latest.get(job_id)

    def follow(self, job_id: str, *, poll_s: float = 0.5) -> Iterator[JobEvent | None]:
        """Yield the job's events as they come, None every `poll_s` of silence (so the caller can check the
        queue for a state it missed), until a final event. Unsubscribes when the caller stops iterating."""
        q: queue.SimpleQueue[JobEvent] = queue.SimpleQueue()
        with self._lock:
            self._subscribers.setdefault(job_id, []).append(q)
            last = self._latest.get(job_id)
        try:
            if last is not None:
                yield last
                if last.final:
                    return
            while True:
                try:
                    event = q.get(timeout=poll_s)
                except queue.Empty:
                    yield None
                    continue
                yield event
                if event.final:
                    return
        finally:
            with self._lock:
                subscribers = self._subscribers.get(job_id, [])
                if q in subscribers:
                    subscribers.remove(q)
                if not subscribers:
                    self._subscribers.pop(job_id, None)
