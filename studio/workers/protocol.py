"""Messages between the studio and a model worker. Plain picklable dataclasses: they cross a process pipe
today and could cross a Ray object store tomorrow without change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from pipelines.base import Animation

PREVIEW_SIZE = 256  # previews are downscaled in the worker: they are for eyes, and cross a pipe many times


@dataclass(frozen=True)
class WorkOrder:
    job_id: str
    pipeline: str  # "module:Class", imported by the worker
    model: str  # catalogue id, the cache key
    source: str  # what Pipeline.load receives
    params: dict[str, Any]
    seed: int
    load_options: dict[str, Any] = field(default_factory=dict)  # from the catalogue entry, passed to load()
    inputs: dict[str, bytes] = field(default_factory=dict)  # input images (PNG) by the reference params hold
    expected_bytes: int | None = None  # the model's size on disk, if known: the cache makes room before loading
    files: dict[str, str] = field(default_factory=dict)  # library files the params name (LoRAs…): name → path


@dataclass(frozen=True)
class Progress:
    job_id: str
    step: int
    total: int
    preview: Image.Image | None = None
    message: str = ""  # e.g. "Downloading stabilityai/sd-turbo: 1.2 GB" while the model loads


@dataclass(frozen=True)
class MemoryUse:
    """What a worker's loaded models hold and may hold, in bytes: main memory (RAM) and the GPU's (VRAM)."""
    ram: int = 0
    vram: int = 0
    ram_budget: int = 0
    vram_budget: int = 0  # 0 on a CPU worker


@dataclass(frozen=True)
class Finished:
    job_id: str
    images: list[Image.Image]
    seeds: list[int]
    info: dict[str, Any] = field(default_factory=dict)
    animations: dict[int, Animation] = field(default_factory=dict)  # by image index, as in ImageResult
    loaded: tuple[str, ...] = ()  # the model ids the worker holds in memory after this job
    memory: MemoryUse | None = None  # and what they hold


@dataclass(frozen=True)
class Failed:
    job_id: str
    error: str
    interrupted: bool = False  # stopped on request, not broken
    loaded: tuple[str, ...] = ()  # as in Finished
    memory: MemoryUse | None = None


WorkerMessage = Progress | Finished | Failed


class DeliveryFailed(Exception):
    """A finished job's images could not all be stored; `saved` holds the ids of those that were (kept)."""

    def __init__(self, saved: list[str], total: int, cause: Exception) -> None:
        done = f"saved {len(saved)} of {total} images; could not save the rest" if saved else \
            "could not save the images"
        super().__init__(f"{done}: {cause}")
        self.saved = saved
