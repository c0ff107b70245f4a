"""The Ray backend: each model worker is a Ray actor, so workers can run on the GPUs of other machines.

The studio keeps the queue, the gallery and the UI; an actor only runs `WorkerRuntime.run_batch`, the code a local
worker process runs, and keeps its models loaded between jobs. Orders go to an actor as method arguments; its
messages (progress, then the finished images) come back as method results through Ray's object store, and the
studio writes the gallery, so an actor never needs the studio's disk. Ray places each actor (one GPU each where the
cluster has GPUs) and recreates it when its process or node is lost.

This module imports Ray: only `--backend ray` imports it, so the local backend never needs Ray installed.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import signal
import threading
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayError

from studio.workers.backend import WorkerBackend, WorkerHandle
from studio.workers.cache import MemoryBudget
from studio.workers.protocol import WorkerMessage, WorkOrder
from studio.workers.runner import WorkerRuntime

logger = logging.getLogger(__name__)

ACTOR_THREADS = 8  # concurrent calls an actor serves: the running batch, a message poll, a stop, its lifeline
CALL_GRACE_S = 1.0  # a message poll answers within its timeout plus a round trip; a later answer waits for the next
RESTART_WAIT_S = 120.0  # how long a restarted worker waits for Ray to bring its lost actor back before a new one
# what a call to an actor raises when the actor, or the cluster, is gone (a Ray Client losing its server: the latter)
LOST = (RayError, ConnectionError)


class RayWorkerActor:
    """What runs inside the actor's process: a WorkerRuntime, a message outbox and the stop flag.

    The actor is threaded (ACTOR_THREADS), so a message poll or a stop request is served while a batch runs. Threaded
    actors do not keep the order of calls, so each batch has a number and a stop request names the batch it stops.
    """

    def __init__(self, name: str, budget: MemoryBudget, device_options: dict[str, Any], log_level: int,
                 environment: dict[str, str]) -> None:
        logging.basicConfig(level=log_level, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
        os.environ.update(environment)  # the studio's settings a local worker would inherit (e.g. --offline)
        # Ray sets CUDA_VISIBLE_DEVICES to the GPU it gave this actor, which torch then sees as device 0
        self.device = "cuda:0" if ray.get_gpu_ids() else "cpu"
        self.runtime = WorkerRuntime(self.device, budget, device_options)
        self.node = ray.util.get_node_ip_address()
        self._outbox: queue.SimpleQueue[WorkerMessage] = queue.SimpleQueue()
        self._stopped_upto = 0  # batches numbered up to this one are asked to stop
        logger.info("worker %s ready on %s of %s (pid %d)", name, self.device, self.node, os.getpid())

    def where(self) -> tuple[str, str]:
        return self.device, self.node

    def run(self, batch: int, orders: list[WorkOrder]) -> None:
        self.runtime.run_batch(orders, self._outbox.put, lambda: self._stopped_upto >= batch)

    def stop(self, batch: int) -> None:
        self._stopped_upto = max(self._stopped_upto, batch)

    def messages(self, timeout: float) -> list[WorkerMessage]:
        """What the running batch said since the last call; waits up to `timeout` for the first message."""
        try:
            out = [self._outbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        while True:
            try:
                out.append(self._outbox.get_nowait())
            except queue.Empty:
                return out

    def lifeline(self) -> None:
        """Never returns: while this call is pending the actor lives, and it fails when the actor is gone."""
        threading.Event().wait()


class RayWorker(WorkerHandle):
    """The studio's side of one actor. Every call to the actor is asynchronous; `recv` keeps at most one message
    poll in flight, so a slow answer is picked up by the next `recv` instead of being lost."""

    def __init__(self, name: str, remote_class: Any, resources: dict[str, float], budget: MemoryBudget,
                 device_options: dict[str, Any], log_level: int, environment: dict[str, str]) -> None:
        super().__init__(name, "ray")  # "cuda:0 on 10.0.0.7" once the actor says where Ray placed it
        self._remote_class = remote_class
        self._resources = resources
        self._args = (name, budget, device_options, log_level, environment)
        self._actor: Any = None
        self._lifeline: Any = None
        self._where: Any = None
        self._run: Any = None
        self._poll: Any = None
        self._batch = 0
        self._inbox: collections.deque[WorkerMessage] = collections.deque()
        self._death: str | None = None  # why the actor is gone, once known

    @property
    def actor(self) -> Any:
        return self._actor

    def start(self) -> None:
        """Create the actor, or take back the one Ray recreated after a loss. Creating is asynchronous: Ray starts the
        actor's process while the studio goes on, and the first order waits for it."""
        self._run, self._poll = None, None
        self._inbox.clear()
        try:
            if self._actor is not None and not self._recreated_by_ray():
                ray.kill(self._actor, no_restart=True)
                self._actor = None
            if self._actor is None:
                self._actor = self._remote_class.options(
                    **self._resources, max_concurrency=ACTOR_THREADS, max_restarts=-1, max_task_retries=0,
                ).remote(*self._args)
            self._lifeline = self._actor.lifeline.remote()
            self._where = self._actor.where.remote()
        except Exception as e:  # noqa: BLE001 -- the cluster out of reach, or this code missing there: the
            # dispatcher sees a dead worker and tries again, waiting longer each time; the log says why
            logger.error("worker %s: could not start its actor: %s: %s", self.name, type(e).__name__, e)
            self._died(e)
            return
        self._death = None

    def _recreated_by_ray(self) -> bool:
        """After a loss: whether Ray brought the actor back (a lost process or node) rather than it being gone for
        good (killed, or out of restarts)."""
        try:
            ray.get(self._actor.where.remote(), timeout=RESTART_WAIT_S)
        except (RayActorError, GetTimeoutError):
            return False
        return True

    def send(self, orders: list[WorkOrder]) -> None:
        self._batch += 1
        try:
            self._run = self._actor.run.remote(self._batch, orders)
        except LOST as e:
            self._died(e)

    def recv(self, timeout: float) -> WorkerMessage | None:
        if not self._inbox and self._death is None:
            try:
                self._fetch(timeout)
            except LOST as e:
                self._died(e)
        return self._inbox.popleft() if self._inbox else None

    def _fetch(self, timeout: float) -> None:
        """Wait up to `timeout` (and a round trip) for the actor's next messages."""
        if self._poll is None:
            self._poll = self._actor.messages.remote(timeout)
        ready, _ = ray.wait([self._poll], timeout=timeout + CALL_GRACE_S)
        if not ready:
            return
        poll, self._poll = self._poll, None
        self._inbox.extend(ray.get(poll))
        if not self._inbox and self._run is not None and ray.wait([self._run], timeout=0)[0]:
            self._check_run()

    def _check_run(self) -> None:
        """The batch call has returned. If it failed outside run_batch (its orders could not be read, say), its jobs
        would never hear back: the actor is treated as broken, so they are re-queued and the actor restarted."""
        run, self._run = self._run, None
        try:
            ray.get(run)
        except RayActorError:
            raise
        except Exception as e:  # noqa: BLE001 -- whatever broke the call, the batch cannot finish
            logger.error("worker %s: its batch call failed: %s", self.name, e)
            self.kill()
            self._death = f"worker {self.name} on {self.device} failed to run its batch: {e}"

    def alive(self) -> bool:
        if self._death is not None or self._actor is None:
            return False
        try:
            if ray.wait([self._lifeline], timeout=0)[0]:  # a lifeline answers only when the actor is gone
                ray.get(self._lifeline)  # raises why
            if self._where is not None and ray.wait([self._where], timeout=0)[0]:
                where, self._where = self._where, None
                device, node = ray.get(where)
                self.device = f"{device} on {node}"
        except LOST as e:
            self._died(e)
            return False
        return True

    def _died(self, error: Exception) -> None:
        lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()] or [type(error).__name__]
        why = [line for line in lines[1:] if line.startswith("The actor is dead because")]
        self._death = f"worker {self.name} on {self.device} was lost ({' '.join(lines[:1] + why)})"

    def exit_reason(self) -> str:
        return self._death or f"worker {self.name} stopped answering"

    def stop_job(self) -> None:
        if self._actor is not None and self._death is None:
            try:
                self._actor.stop.remote(self._batch)
            except LOST as e:
                self._died(e)

    def clear_stop(self) -> None:
        """Nothing to clear: a stop request names the batch it stops, and a new batch has a new number."""

    def kill(self) -> None:
        """End the actor's process. Ray brings it back (max_restarts), so the next `start` finds it there."""
        if self._actor is not None and self._death is None:
            self._death = f"worker {self.name} on {self.device} was killed"
            with contextlib.suppress(*LOST):
                ray.kill(self._actor, no_restart=False)

    def shutdown(self, timeout: float) -> None:
        """The running batch was stopped by the dispatcher already: the actor ends now, for good."""
        if self._actor is not None:
            self._death = f"worker {self.name} was shut down"
            with contextlib.suppress(*LOST):
                ray.kill(self._actor, no_restart=True)
            self._actor = None


class RayBackend(WorkerBackend):
    """Workers as Ray actors on a cluster (or a Ray instance this studio starts on its own machine)."""

    name = "ray"

    def __init__(self, *, address: str, workers: int, cpus_per_worker: float, budget: MemoryBudget,
                 device_options: dict[str, Any], log_level: int, environment: dict[str, str]) -> None:
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            on_term = signal.getsignal(signal.SIGTERM)
            # address "": Ray's own default (RAY_ADDRESS, else a cluster started on this machine, else a new one)
            ray.init(address=address or None, logging_level=log_level, log_to_driver=log_level <= logging.INFO,
                     namespace="atelier")
            if threading.current_thread() is threading.main_thread() and on_term is not None:
                # ray.init makes SIGTERM exit at once; the studio's own handler shuts down in order (jobs kept)
                signal.signal(signal.SIGTERM, on_term)
        count, per_worker = plan_actors(ray.cluster_resources(), workers, cpus_per_worker)
        remote_class = ray.remote(RayWorkerActor)
        self._handles = [RayWorker(f"ray{i}", remote_class, per_worker, budget, device_options, log_level,
                                   environment) for i in range(count)]

    @property
    def handles(self) -> list[WorkerHandle]:
        return list(self._handles)

    def close(self) -> None:
        if self._owns_ray:
            ray.shutdown()


def plan_actors(resources: dict[str, float], workers: int, cpus_per_worker: float) -> tuple[int, dict[str, float]]:
    """How many worker actors, and what each asks of Ray, for a cluster with these resources: one GPU each where the
    cluster has GPUs (one actor per GPU unless `workers` says), else CPUs only (one actor unless `workers` says)."""
    cpus, gpus = resources.get("CPU", 0), int(resources.get("GPU", 0))
    count = workers or max(gpus, 1)
    per_worker = {"num_cpus": cpus_per_worker, "num_gpus": 1 if gpus else 0}
    logger.info("Ray cluster: %s CPUs, %d GPUs; %d worker actor(s), each %s", cpus, gpus, count, per_worker)
    if count > gpus if gpus else count * cpus_per_worker > cpus:
        logger.warning("%d worker actor(s) need more than the cluster has now (%s CPUs, %d GPUs): the others wait "
                       "for machines to join", count, cpus, gpus)
    return count, per_worker
