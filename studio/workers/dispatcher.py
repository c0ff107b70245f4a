"""Dispatcher: one thread per worker that claims jobs from the queue (with the pending jobs that can share their
batch), feeds them to its worker and turns the worker's messages into queue updates, events and gallery images.
It also supervises: a dead worker is detected on the next poll, its jobs re-queued (once) and the worker restarted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from studio.jobs import Job, JobEvent, JobEvents, JobQueue
from studio.workers.backend import WorkerHandle
from studio.workers.protocol import DeliveryFailed, Failed, Finished, MemoryUse, Progress, WorkOrder

logger = logging.getLogger(__name__)

POLL_S = 0.2  # how often a silent worker is checked for death and its job for a cancel request
STOP_GRACE_S = 20.0  # a job asked to stop gets this long to reach its next step before its worker is killed
PROGRESS_WRITE_S = 0.5  # progress is persisted at most this often (events go out at every step)
AFFINITY_WAIT_S = 30.0  # jobs wait for the worker holding their model while it has been busy less than this


class ModelAffinity:
    """Which pending jobs an idle worker leaves to another: those for a model another worker holds in memory (or is
    loading for the job it runs) and this one does not. So each model loads on one worker, not on every worker in
    turn, while jobs for models nobody holds go to whichever worker is free. A worker busy for AFFINITY_WAIT_S or
    more holds nothing back: its models' jobs do not wait for ever on one long job."""

    def __init__(self, queue: JobQueue) -> None:
        self._queue = queue
        self._lock = threading.Lock()
        self.dispatchers: list[Dispatcher] = []

    def claim(self, me: Dispatcher) -> Job | None:
        with self._lock:  # one claim at a time: two idle workers never both start loading a model's first job
            now = time.monotonic()
            held = {model for d in self.dispatchers if d is not me
                    and (d.busy_since is None or now - d.busy_since < AFFINITY_WAIT_S) for model in d.models()}
            job = self._queue.claim(me.handle.name, leave_models=held - me.models())
            if job is not None:
                me.current_model, me.busy_since = job.spec.model, now
            return job


class Dispatcher(threading.Thread):
    def __init__(self, handle: WorkerHandle, queue: JobQueue, events: JobEvents,
                 prepare: Callable[[Job], WorkOrder], deliver: Callable[[Job, Finished], list[str]], *,
                 affinity: ModelAffinity, max_batch: int = 1) -> None:
        super().__init__(name=f"dispatch-{handle.name}", daemon=True)
        self.handle = handle
        self._queue = queue
        self._events = events
        self._prepare = prepare
        self._deliver = deliver
        self._max_batch = max_batch  # jobs with one batch key taken together (1: one job at a time)
        self._affinity = affinity  # shared by the pool's dispatchers
        self._stopping = threading.Event()
        self.current_jobs: tuple[str, ...] = ()  # what the worker runs now: one job, or the jobs of a batch
        self.current_model: str | None = None  # the model of those jobs
        self.busy_since: float | None = None  # when they were claimed (monotonic clock); None when idle
        self.restarts = 0
        self.loaded: tuple[str, ...] = ()  # the model ids the worker last said it holds in memory
        self.memory: MemoryUse | None = None  # and what it said they hold

    def stop(self) -> None:
        self._stopping.set()

    def models(self) -> set[str]:
        """The models this worker holds, or is about to hold: a job on one of them starts without loading it."""
        return {*self.loaded, self.current_model} - {None}

    def run(self) -> None:
        crashes_in_a_row = 0
        self.handle.start()
        while not self._stopping.is_set():
            if not self.handle.alive():
                crashes_in_a_row += 1
                self._restart(backoff_s=min(2.0 ** (crashes_in_a_row - 1), 30.0) - 1.0)
                continue
            job = self._affinity.claim(self)
            if job is None:
                self._queue.wait_for_work(timeout=0.5)
                continue
            batch = [job, *self._queue.claim_batch(self.handle.name, job, self._max_batch - 1)]
            try:
                if self._run(batch):
                    crashes_in_a_row = 0
            finally:
                self.current_model, self.busy_since = None, None

    def _restart(self, backoff_s: float) -> None:
        logger.warning("%s; restarting it", self.handle.exit_reason())
        if backoff_s > 0 and self._stopping.wait(backoff_s):
            return
        self.handle.kill()
        self.loaded, self.memory = (), None
        self.handle.start()
        self.restarts += 1

    def _run(self, batch: list[Job]) -> bool:
        """Run claimed jobs (one batch) to their ends. False when the worker died under them."""
        orders, running = [], {}
        for job in batch:
            try:
                orders.append(self._prepare(job))
                running[job.id] = job
            except (ValueError, LookupError) as e:
                self._end(job.id, "failed", str(e), self._queue.fail)
        if not orders:
            return True
        self.current_jobs = tuple(running)
        try:
            self.handle.clear_stop()
            self.handle.send(orders)
            for job_id in running:
                self._events.publish(JobEvent(job_id, "started", total=0))
            return self._follow(running)
        finally:
            self.current_jobs = ()

    def _follow(self, running: dict[str, Job]) -> bool:
        """Until every job of the batch has its Finished or Failed; `running` is emptied as they come."""
        stop_deadline: float | None = None
        next_check = 0.0
        last_write: dict[str, float] = {}
        while running:
            message = self.handle.recv(timeout=POLL_S)
            now = time.monotonic()
            if isinstance(message, Progress):
                if now - last_write.get(message.job_id, 0.0) >= PROGRESS_WRITE_S or message.step == message.total:
                    self._queue.set_progress(message.job_id, message.step, message.total)
                    last_write[message.job_id] = now
                self._events.publish(JobEvent(message.job_id, "progress", message.step, message.total,
                                              message.preview, message.message))
            elif isinstance(message, Finished):
                self.loaded, self.memory = message.loaded, message.memory
                self._finish(running.pop(message.job_id), message)
            elif isinstance(message, Failed):
                self.loaded, self.memory = message.loaded, message.memory
                self._failed(running.pop(message.job_id), message)
            elif not self.handle.alive():
                self.loaded, self.memory = (), None
                for job in running.values():
                    self._lost(job)
                return False
            # checked on a clock, not only in silence: a job streaming progress must still be stoppable
            if stop_deadline is None and now >= next_check:
                next_check = now + POLL_S
                if self._stopping.is_set() or any(self._queue.get(j).cancel_requested for j in running):
                    self.handle.stop_job()  # a batch stops as a whole: see _failed for the jobs not asked to
                    stop_deadline = now + STOP_GRACE_S
            elif stop_deadline is not None and now > stop_deadline:
                logger.warning("job %s ignored its stop request for %.0f s; killing worker %s",
                               ", ".join(running), STOP_GRACE_S, self.handle.name)
                self.handle.kill()
                stop_deadline = float("inf")
        return True

    def _finish(self, job: Job, message: Finished) -> None:
        try:
            image_ids = self._deliver(job, message)
        except Exception as e:  # noqa: BLE001 -- a gallery failure fails this job; the studio keeps serving
            logger.exception("saving the images of job %s failed", job.id)
            failed = e if isinstance(e, DeliveryFailed) else DeliveryFailed([], len(message.images), e)
            self._queue.fail(job.id, str(failed), failed.saved)  # images saved before the failure stay the job's
            self._events.publish(JobEvent(job.id, "failed", message=str(failed), image_ids=failed.saved))
            return
        self._queue.complete(job.id, image_ids)
        self._events.publish(JobEvent(job.id, "completed", message="done", image_ids=image_ids))

    def _failed(self, job: Job, message: Failed) -> None:
        if message.interrupted and not self._queue.get(job.id).cancel_requested:
            # stopped without being asked: the studio is shutting down, or another job of its batch was stopped
            why = "the studio stopped; the job will resume" if self._stopping.is_set() else \
                "another job of its batch was stopped; it runs again"
            self._queue.return_to_queue(job.id, alone=not self._stopping.is_set())  # a batch-mate's stop: once
            self._events.publish(JobEvent(job.id, "requeued", message=why))
        elif message.interrupted:
            self._queue.mark_canceled(job.id)
            self._events.publish(JobEvent(job.id, "canceled", message="stopped"))
        else:
            self._end(job.id, "failed", message.error, self._queue.fail)

    def _lost(self, job: Job) -> None:
        reason = self.handle.exit_reason()
        released = self._queue.release(job.id, reason)
        kind = {"pending": "requeued", "canceled": "canceled"}.get(released.status, "failed")
        self._events.publish(JobEvent(job.id, kind, message=released.error or reason))

    def _end(self, job_id: str, kind: str, error: str, mark: Callable[[str, str], Job]) -> None:
        mark(job_id, error)
        self._events.publish(JobEvent(job_id, kind, message=error))  # type: ignore[arg-type]
