"""The worker side: load (or reuse) the model, run one job or a batch of jobs, stream progress, hand back images.

`WorkerRuntime.run_batch` is the same for every backend; `worker_main` is the loop of a local worker process, which
talks to the studio over a pipe and watches a shared flag for "stop this job".
"""

from __future__ import annotations

import dataclasses
import io
import logging
import signal
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pipelines.base import BatchItem, Interrupted, OnStep, Pipeline
from pipelines.catalog import import_pipeline
from pipelines.models import ModelError
from studio.workers.cache import MemoryBudget, ModelCache
from studio.workers.protocol import (
    PREVIEW_SIZE,
    Failed,
    Finished,
    MemoryUse,
    Progress,
    WorkerMessage,
    WorkOrder,
)

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.synchronize import Event

    from PIL import Image

logger = logging.getLogger(__name__)


class WorkerRuntime:
    """What a worker keeps between jobs: its device and its model cache."""

    def __init__(self, device: str, budget: MemoryBudget, device_options: dict[str, Any] | None = None) -> None:
        self.device = device
        self.device_options = device_options or {}
        on_gpu = device.startswith("cuda")
        vram = (budget.vram if budget.vram is not None else int(0.9 * gpu_memory(device))) if on_gpu else 0
        # a model loads onto the GPU, unless low-VRAM offload keeps its parts in RAM between uses
        loads_into = "vram" if on_gpu and not self.device_options.get("low_vram") else "ram"
        self.cache: ModelCache[Pipeline] = ModelCache({"ram": budget.ram, "vram": vram},
                                                      size_of=lambda p: p.memory(), loads_into=loads_into)

    def run_batch(self, orders: Sequence[WorkOrder], send: Callable[[WorkerMessage], None],
                  should_stop: Callable[[], bool]) -> None:
        """Run orders for one model together (a single order is a batch of one); always ends by sending exactly
        one Finished or Failed per order, each saying which models the worker holds in memory afterwards."""
        outcomes = self._outcomes(orders, send, should_stop)
        loaded, memory = self.loaded(), self.memory()
        for outcome in outcomes:
            send(dataclasses.replace(outcome, loaded=loaded, memory=memory))

    def _outcomes(self, orders: Sequence[WorkOrder], send: Callable[[WorkerMessage], None],
                  should_stop: Callable[[], bool]) -> list[Finished | Failed]:
        """One outcome per order; a failure (or Stop) of the batch is every order's."""
        first = orders[0]
        try:
            cls = import_pipeline(first.pipeline)
            items = [BatchItem(cls.Params.from_dict(o.params), o.seed, on_step=_progress(o.job_id, send),
                               inputs={ref: _decode(data) for ref, data in o.inputs.items()}) for o in orders]

            def on_status(message: str) -> None:
                for order in orders:
                    send(Progress(order.job_id, 0, 0, None, message))

            pipe = self.cache.get(_cache_key(first), lambda: cls.load(
                first.source, device=self.device, on_status=on_status, **self.device_options, **first.load_options),
                expected_bytes=first.expected_bytes)
            if len(items) == 1:
                item = items[0]
                files = {"files": first.files} if first.files else {}  # jobs naming library files run alone
                results = [pipe(item.params, seed=item.seed, on_step=item.on_step, should_stop=should_stop,
                                inputs=item.inputs, **files)]
            else:
                results = pipe.run_batch(items, should_stop=should_stop)
            if should_stop() and not all(r.info.get("partial") for r in results):
                # diffusers' interrupt still returns (a partial image): kept only when the user asked for it
                raise Interrupted("stopped after the last step")
        except Interrupted as e:
            return [Failed(o.job_id, str(e) or "stopped", interrupted=True) for o in orders]
        except (ModelError, ValueError) as e:  # a PipelineError is a ModelError too
            return [Failed(o.job_id, str(e)) for o in orders]
        except Exception as e:  # noqa: BLE001 -- any bug in a pipeline fails its jobs, not the worker
            logger.exception("job %s failed", ", ".join(o.job_id for o in orders))
            if _is_out_of_memory(e):
                self.cache.clear()
                return [Failed(o.job_id, f"out of memory on {self.device}: try a smaller size or batch")
                        for o in orders]
            return [Failed(o.job_id, f"{type(e).__name__}: {e}") for o in orders]
        return [Finished(o.job_id, r.images, r.seeds, r.info, r.animations)
                for o, r in zip(orders, results, strict=True)]

    def loaded(self) -> tuple[str, ...]:
        """The catalogue ids of the models in memory, least recently used first."""
        held = self.cache.keys()
        return tuple(key.split("|", 1)[1] for key in held)

    def memory(self) -> MemoryUse:
        used, budgets = self.cache.used(), self.cache.budgets
        return MemoryUse(used["ram"], used["vram"], budgets["ram"], budgets["vram"])


def worker_main(name: str, device: str, conn: Connection, cancel: Event, budget: MemoryBudget, log_level: int,
                device_options: dict[str, Any]) -> None:
    """Entry point of a spawned worker process: take orders until told to stop (None) or the pipe closes."""
    logging.basicConfig(level=log_level, format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the studio stops us in order
    runtime = WorkerRuntime(device, budget, device_options)
    logger.info("worker %s ready on %s", name, device)
    while True:
        try:
            orders: Any = conn.recv()
        except (EOFError, OSError):
            break
        if orders is None:
            break
        runtime.run_batch(orders, conn.send, cancel.is_set)
    logger.info("worker %s stopped", name)


def gpu_memory(device: str) -> int:
    """Bytes of memory the GPU `device` ("cuda:N") has."""
    import torch

    return torch.cuda.get_device_properties(torch.device(device)).total_memory


def _cache_key(order: WorkOrder) -> str:
    return f"{order.pipeline}|{order.model}"


def _progress(job_id: str, send: Callable[[WorkerMessage], None]) -> OnStep:
    def on_step(step: int, total: int, preview: Image.Image | None) -> None:
        send(Progress(job_id, step, total, _small(preview)))
    return on_step


def _decode(data: bytes) -> Image.Image:
    from PIL import Image

    with Image.open(io.BytesIO(data), formats=("PNG",)) as image:  # the input store keeps PNGs only
        return image.copy()


def _small(preview: Image.Image | None) -> Image.Image | None:
    if preview is None:
        return None
    preview = preview.copy()
    preview.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
    return preview


def _is_out_of_memory(error: Exception) -> bool:
    return isinstance(error, MemoryError) or "out of memory" in str(error).lower()
