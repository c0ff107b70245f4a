"""A tiny real pipeline for the studio's tests: seeded colour patterns drawn in steps.

It follows the pipeline contract exactly (Params with checks, load, __call__ with on_step/should_stop),
so the queue, workers, gallery and UI are exercised end to end without any model weights. Loaded as a
plugin: `--plugins tests.support.pattern`.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from pipelines.base import (
    BaseParams,
    ImageInputs,
    ImageResult,
    Interrupted,
    OnStatus,
    OnStep,
    Pipeline,
    ShouldStop,
    Workload,
    param,
)
from pipelines.imaging import to_image
from pipelines.models import ModelEntry


@dataclass(frozen=True)
class PatternParams(BaseParams):
    prompt: str = param("", label="Prompt")
    width: int = param(64, label="Width", minimum=8, maximum=512, step=8)
    height: int = param(64, label="Height", minimum=8, maximum=512, step=8)
    num_images: int = param(1, label="Images", minimum=1, maximum=8)
    num_steps: int = param(4, label="Steps", minimum=1, maximum=200)
    step_delay: float = param(0.0, label="Seconds per step", minimum=0.0, maximum=5.0)
    palette: Literal["warm", "cool"] = param("warm", label="Palette")
    crash: bool = param(False, label="Kill the worker (test fault)")
    fail: str = param("", label="Fail with this error (test fault)")

    def check(self) -> None:
        super().check()
        if self.width % 8 or self.height % 8:
            raise ValueError(f"`width` and `height` must be divisible by 8, got {self.width}x{self.height}")

    def workload(self) -> Workload:
        return Workload(self.num_images, self.width * self.height)


class PatternPipeline(Pipeline):
    kind = "pattern"
    Params = PatternParams

    def __init__(self, source: str, device: str) -> None:
        self.source = source
        self.device = torch.device(device)

    @classmethod
    def load(cls, source: str | Path, *, device: str, dtype: str | None = None, on_status: OnStatus | None = None,
             **options: Any) -> PatternPipeline:
        if on_status is not None:
            on_status(f"Loading {source}")
        return cls(str(source), device)

    def __call__(self, params: PatternParams, *, seed: int, on_step: OnStep | None = None,
                 should_stop: ShouldStop | None = None, inputs: ImageInputs | None = None) -> ImageResult:
        if params.crash:
            os.kill(os.getpid(), signal.SIGKILL)
        if params.fail:
            raise RuntimeError(params.fail)
        images, seeds = [], []
        total = params.num_steps * params.num_images
        for i in range(params.num_images):
            g = torch.Generator(device="cpu").manual_seed(seed + i)
            canvas = torch.zeros(3, params.height, params.width)  # (C, H, W)
            for step in range(params.num_steps):
                # 1. stop between steps when asked
                if should_stop is not None and should_stop():
                    raise Interrupted(f"stopped at step {step} of {params.num_steps}")
                # 2. add one random blob of colour
                canvas += _blob(g, params) / params.num_steps
                time.sleep(params.step_delay)
                if on_step is not None:
                    on_step(i * params.num_steps + step + 1, total, to_image(canvas))
            images.append(to_image(canvas))
            seeds.append(seed + i)
        return ImageResult(images=images, seeds=seeds, info={"source": self.source})


def _blob(g: torch.Generator, params: PatternParams) -> torch.Tensor:
    ys = torch.linspace(0, 1, params.height).view(-1, 1)
    xs = torch.linspace(0, 1, params.width).view(1, -1)
    cy, cx, r = torch.rand(3, generator=g)
    mask = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / (0.05 + 0.2 * r))  # (H, W)
    base = torch.tensor([1.0, 0.5, 0.1]) if params.palette == "warm" else torch.tensor([0.1, 0.5, 1.0])
    colour = base * (0.5 + torch.rand(3, generator=g))
    return colour.view(3, 1, 1) * mask


PIPELINES = [PatternPipeline]
MODELS = [
    ModelEntry(id="pattern-v1", kind="pattern", source="builtin:pattern", origin="plugin", licence="CC0-1.0",
               description="Seeded colour blobs (test pipeline)", hash="0123abcd"),
    ModelEntry(id="pattern-v2", kind="pattern", source="builtin:pattern-v2", origin="plugin", licence="CC0-1.0",
               restriction="non-commercial (test licence)", description="Second test model"),
]
