"""The SDXL refiner, as A1111's `refiner_checkpoint` and `refiner_switch_at`: the base model denoises the first part
of the schedule (diffusers' `denoising_end`), and a second SDXL model (the refiner, or any SDXL checkpoint) takes its
latents and finishes from the same point (`denoising_start`), as diffusers' "ensemble of expert denoisers".

The refiner is a checkpoint of the model library, named like a LoRA and sent with the job; the worker keeps the last
refiner loaded beside the base model. Its text encoders read the prompts' words (the refiner of SDXL has only the
second encoder, so A1111's weights and prompt editing shape the base model's part of the picture).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.base import ImageInputs, ImageResult, Interrupted, OnStep, PipelineError, ShouldStop
from pipelines.models import kinds
from pipelines.prompts.encoding import plain_text
from pipelines.step_callback import StepCallback
from pipelines.text_to_image_params import TextToImageParams

if TYPE_CHECKING:
    import torch

# (params, seed, progress, stop, inputs, output type, extra arguments of the call) → the pass's result
RunPass = Callable[..., ImageResult]


class Refiners:
    """The last refiner a job named, loaded once and kept (one at a time: a refiner is a second SDXL UNet)."""

    def __init__(self, device: str, dtype: torch.dtype) -> None:
        self.device, self.dtype = device, dtype
        self._loaded: tuple[str, Any] | None = None

    def get(self, path: str) -> Any:
        """The image-to-image pipeline of the checkpoint at `path`."""
        if self._loaded is None or self._loaded[0] != path:
            from diffusers import AutoPipelineForImage2Image

            from pipelines.diffusion_utils import model_family
            from pipelines.model_sources import load_diffusers_pipeline

            self._loaded = None  # the old refiner goes before the new one loads
            pipe, _ = load_diffusers_pipeline(path, torch_dtype=self.dtype)
            if model_family(pipe) != "sdxl":
                raise PipelineError(f"the refiner {Path(path).name} is not an SDXL model; it cannot take over SDXL "
                                    "latents")
            refiner = AutoPipelineForImage2Image.from_pipe(pipe).to(self.device)
            refiner.set_progress_bar_config(disable=True)
            self._loaded = (path, refiner)
        return self._loaded[1]

    def modules(self) -> Iterator[torch.nn.Module]:
        import torch

        if self._loaded is not None:
            yield from (m for m in self._loaded[1].components.values() if isinstance(m, torch.nn.Module))


def run_refined(run: RunPass, refiners: Refiners, family: str, params: TextToImageParams, seed: int,
                on_step: OnStep | None, should_stop: ShouldStop, inputs: ImageInputs,
                files: Mapping[str, str]) -> ImageResult:
    """The base model to `refiner_switch_at` of the steps, then the refiner to the end, picture by picture."""
    import torch

    if family != "sdxl":
        raise PipelineError("the refiner follows an SDXL base model (the switch hands over SDXL latents); this "
                            "model is not SDXL")
    path = files.get(f"{kinds.CHECKPOINT}:{params.refiner_checkpoint}")
    if path is None:
        raise PipelineError(f"the refiner {params.refiner_checkpoint!r} was not sent with the job")
    switch = params.refiner_switch_at
    base_steps = params.num_steps * params.batch_count
    count = params.batch_size * params.batch_count
    refiner_steps = params.num_steps - int(params.num_steps * switch)
    total = base_steps + count * refiner_steps
    # 1. the base model's part of the schedule, its latents kept for the refiner
    first = run(params, seed, on_step, should_stop, inputs, "latent", {"denoising_end": switch})
    if first.info.get("partial"):
        raise Interrupted(f"stopped before the switch to the refiner ({switch:.0%} of the steps)")
    refiner = refiners.get(path)
    steps = params.num_steps
    prompt, negative = plain_text(params.prompt_text, steps), plain_text(params.negative_prompt, steps)
    images = []
    for index, (latents, picture_seed) in enumerate(zip(first.images, first.seeds, strict=True)):
        # 2. the refiner from the switch on, with the picture's own seed
        done_before = base_steps + index * refiner_steps

        def progress(done: int, _total: int, preview: Any, done_before: int = done_before) -> None:
            if on_step is not None:
                on_step(done_before + done, total, preview)

        callback = StepCallback([progress], 1, should_stop, "sdxl")
        output = refiner(prompt=prompt, negative_prompt=negative or None, image=latents.to(refiner.unet.dtype),
                         num_inference_steps=steps, denoising_start=switch, guidance_scale=params.cfg_scale,
                         generator=torch.Generator(device="cpu").manual_seed(picture_seed),
                         callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents"])
        if callback.stopped:
            raise Interrupted(f"stopped in the refiner, at step {callback.last_step}")
        images += output.images
    width, height = images[0].size
    info = {**first.info, "size": f"{width}x{height}", "refiner": params.refiner_checkpoint}
    return dataclasses.replace(first, images=images, info=info)
