"""Worker backends and handles: where the model workers run, and how the studio reaches one of them.

A WorkerBackend makes the handles; the dispatcher only uses the WorkerHandle interface, so a worker may be a local
process (the local backend's default), a thread in the studio (tests, debugging) or a Ray actor (ray_backend.py).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import threading
from abc import ABC, abstractmethod
from typing import Any

from studio.workers.cache import MemoryBudget
from studio.workers.protocol import WorkerMessage, WorkOrder
from studio.workers.runner import WorkerRuntime, worker_main

logger = logging.getLogger(__name__)


class WorkerHandle(ABC):
    def __init__(self, name: str, device: str) -> None:
        self.name = name
        self.device = device

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def send(self, orders: list[WorkOrder]) -> None:
        """Orders for one model, to run as one batch (usually a batch of one)."""

    @abstractmethod
    def recv(self, timeout: float) -> WorkerMessage | None:
        """The next message, or None after `timeout` (or when the worker died: check `alive`)."""

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def exit_reason(self) -> str:
        """Why a dead worker died, in words for the job's error."""

    @abstractmethod
    def stop_job(self) -> None:
        """Ask the running job to stop at its next step."""

    @abstractmethod
    def clear_stop(self) -> None: ...

    @abstractmethod
    def kill(self) -> None:
        """End the worker now (a job ignoring its stop request, or shutdown)."""

    @abstractmethod
    def shutdown(self, timeout: float) -> None:
        """Let the worker finish its loop and exit; kill it after `timeout`."""


class WorkerBackend(ABC):
    """Where the workers run: makes their handles, and releases what it holds once they are shut down."""

    name: str

    @property
    @abstractmethod
    def handles(self) -> list[WorkerHandle]: ...

    @abstractmethod
    def close(self) -> None:
        """After every handle is shut down."""


class LocalBackend(WorkerBackend):
    """One worker per device of this machine: a spawned process each, or a thread of the studio (`in_process`)."""

    name = "local"

    def __init__(self, devices: list[str], *, budget: MemoryBudget, log_level: int, in_process: bool,
                 device_options: dict[str, Any]) -> None:
        self._handles: list[WorkerHandle] = []
        for device in devices:
            name = device.replace(":", "")
            if in_process:
                self._handles.append(ThreadWorker(name, device, budget, device_options))
            else:
                self._handles.append(ProcessWorker(name, device, budget, log_level, device_options))

    @property
    def handles(self) -> list[WorkerHandle]:
        return list(self._handles)

    def close(self) -> None:
        """Nothing to release: each worker ended with its handle's shutdown."""


class ProcessWorker(WorkerHandle):
    """A spawned process (spawn, not fork: CUDA cannot be initialised in a forked child)."""

    def __init__(self, name: str, device: str, budget: MemoryBudget, log_level: int,
                 device_options: dict[str, Any]) -> None:
        super().__init__(name, device)
        self._ctx = multiprocessing.get_context("spawn")
        self._budget = budget
        self._device_options = device_options
        self._log_level = log_level
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn = None
        self._cancel = self._ctx.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._cancel.clear()
        self._process = self._ctx.Process(
            target=worker_main, name=f"atelier-{self.name}", daemon=True,
            args=(self.name, self.device, child, self._cancel, self._budget, self._log_level,
                  self._device_options),
        )
        self._process.start()
        child.close()  # so recv() sees EOF when the child dies
        self._conn = parent
        logger.info("started worker %s on %s (pid %s)", self.name, self.device, self._process.pid)

    def send(self, orders: list[WorkOrder]) -> None:
        self._conn.send(orders)

    def recv(self, timeout: float) -> WorkerMessage | None:
        try:
            if self._conn.poll(timeout):
                return self._conn.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)
        return None

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def exit_reason(self) -> str:
        code = self._process.exitcode if self._process else None
        if code is None:
            return f"worker {self.name} stopped answering"
        if code < 0:
            name = signal.Signals(-code).name
            hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
            return f"worker {self.name} on {self.device} died from {name}{hint}"
        return f"worker {self.name} on {self.device} exited with code {code}"

    def stop_job(self) -> None:
        self._cancel.set()

    def clear_stop(self) -> None:
        self._cancel.clear()

    def kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)

    def shutdown(self, timeout: float) -> None:
        if self._process is None:
            return
        if self._process.is_alive():
            with contextlib.suppress(BrokenPipeError, OSError):
                self._conn.send(None)
            self._process.join(timeout)
        self.kill()
        self._conn.close()


class ThreadWorker(WorkerHandle):
    """The same worker loop on a thread of the studio: no process start-up cost, but no crash isolation."""

    def __init__(self, name: str, device: str, budget: MemoryBudget, device_options: dict[str, Any]) -> None:
        super().__init__(name, device)
        self._budget = budget
        self._device_options = device_options
        self._orders: queue.SimpleQueue[list[WorkOrder] | None] = queue.SimpleQueue()
        self._messages: queue.SimpleQueue[WorkerMessage] = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        runtime = WorkerRuntime(self.device, self._budget, self._device_options)

        def loop() -> None:
            while (orders := self._orders.get()) is not None:
                runtime.run_batch(orders, self._messages.put, self._cancel.is_set)

        self._thread = threading.Thread(target=loop, name=f"atelier-{self.name}", daemon=True)
        self._thread.start()

    def send(self, orders: list[WorkOrder]) -> None:
        self._orders.put(orders)

    def recv(self, timeout: float) -> WorkerMessage | None:
        try:
            return self._messages.get(timeout=timeout)
        except queue.Empty:
            return None

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def exit_reason(self) -> str:
        return f"worker thread {self.name} ended"

    def stop_job(self) -> None:
        self._cancel.set()

    def clear_stop(self) -> None:
        self._cancel.clear()

    def kill(self) -> None:
        self._cancel.set()  # a thread cannot be killed; the job stops at its next step

    def shutdown(self, timeout: float) -> None:
        self._orders.put(None)
        if self._thread is not None:
            self._thread.join(timeout)
