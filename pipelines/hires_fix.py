"""Hires fix, as A1111 describes it: make the picture at the first size, enlarge it, and run img2img over the enlarged
picture with the same model, seed and prompts (or the hires prompts), `strength` of the way, so the model paints
the detail the larger size can hold instead of stretching the draft.

The enlargement is either of the latents (A1111's "Latent" modes: torch interpolation, no decode in between) or of
the decoded picture (Lanczos, Nearest, None as a plain resize, or an upscaler network, pipelines.upscale). The second
pass is an img2img job of its own on the loaded model (diffusers' `from_pipe` shares every weight), one picture at a
time from that picture's seed, so picture i of a job is still reproduced from seed + i alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pipelines.base import ImageInputs, ImageResult, OnStep, ShouldStop
from pipelines.text_to_image_params import LATENT_UPSCALERS, TextToImageParams
from pipelines.upscale import UpscalerCache, enlarge

if TYPE_CHECKING:
    import torch
    from PIL import Image

HIRES_INPUT = "hires-fix"  # the reference the second pass's params give the enlarged picture or latents

# (params, seed, progress, stop, inputs, output type) → the pass's result: TextToImagePipeline._run
RunPass = Callable[[TextToImageParams, int, OnStep | None, ShouldStop, ImageInputs, str], ImageResult]


def second_pass_params(params: TextToImageParams, size: tuple[int, int]) -> TextToImageParams:
    """The second pass as an img2img job on the enlarged picture, at `size`."""
    return dataclasses.replace(
        params, init_image=HIRES_INPUT, mask="", width=size[0], height=size[1], num_steps=params.hr_steps,
        sampler=params.hr_sampler or params.sampler, prompt=params.hr_prompt or params.prompt,
        negative_prompt=params.hr_negative_prompt or params.negative_prompt, enable_hr=False, batch_size=1,
        batch_count=1, subseed_strength=0.0, seed_resize_from_w=0, seed_resize_from_h=0, keep_partial=False)


def run_hires(run: RunPass, pipe: Any, upscalers: UpscalerCache, params: TextToImageParams, seed: int,
              on_step: OnStep | None, should_stop: ShouldStop, inputs: ImageInputs,
              files: Mapping[str, str]) -> ImageResult:
    """Both passes of a hires-fix job. A Stop in the first pass with `keep_partial` keeps the first pictures."""
    latent = params.hr_upscaler in LATENT_UPSCALERS
    count = params.batch_size * params.batch_count
    first_steps = params.num_steps * params.batch_count
    # 1. the first pass at the asked size; its latents are kept undecoded for a latent upscaler
    first = run(params, seed, _offset(on_step, 0, None), should_stop, inputs, "latent" if latent else "pil")
    if first.info.get("partial"):
        return dataclasses.replace(first, images=decode(pipe, first.images) if latent else first.images)
    width, height = (int(side) for side in first.info["size"].split("x"))
    size = params.hires_size(width, height)
    hires = second_pass_params(params, size)
    second_steps = _img2img_steps(hires)
    total = first_steps + count * second_steps
    net = None if latent else upscalers.get(params.hr_upscaler, files)
    images = []
    info: dict[str, Any] = {}
    for index, (picture, picture_seed) in enumerate(zip(first.images, first.seeds, strict=True)):
        # 2. enlarge the picture (or its latents) to the second pass's size
        if latent:
            mode, antialias = LATENT_UPSCALERS[params.hr_upscaler]
            enlarged: Any = _enlarge_latents(picture, size, pipe.vae_scale_factor, mode, antialias)
        else:
            enlarged = enlarge(picture, size, net, params.hr_upscaler, should_stop=should_stop)
        # 3. img2img over it from the picture's own seed
        progress = _offset(on_step, first_steps + index * second_steps, total)
        result = run(hires, picture_seed, progress, should_stop, {HIRES_INPUT: enlarged}, "pil")
        images += result.images
        info = info or result.info
    info = {**first.info, **info, "mode": "txt2img", "first_pass_size": f"{width}x{height}"}
    return ImageResult(images=images, seeds=first.seeds, info=info)


def _img2img_steps(params: TextToImageParams) -> int:
    """The steps img2img runs at `strength` of `num_steps`, as diffusers counts them."""
    return max(1, min(int(params.num_steps * params.strength), params.num_steps))


def _offset(on_step: OnStep | None, done_before: int, total: int | None) -> OnStep | None:
    """Progress of one pass as a part of the whole job's (the first pass's own total is kept until the second
    pass's size is known)."""
    if on_step is None:
        return None

    def step(done: int, pass_total: int, preview: Image.Image | None) -> None:
        on_step(done_before + done, total or pass_total, preview)

    return step


def _enlarge_latents(latents: torch.Tensor, size: tuple[int, int], factor: int, mode: str,
                     antialias: bool) -> torch.Tensor:
    """(1, C, h, w) latents at the second pass's latent size (its pixels / the VAE's `factor`)."""
    import torch.nn.functional as F  # noqa: N812 -- torch's convention

    shape = (size[1] // factor, size[0] // factor)
    if mode in ("nearest", "nearest-exact"):
        return F.interpolate(latents, size=shape, mode=mode)
    return F.interpolate(latents.float(), size=shape, mode=mode, antialias=antialias).to(latents.dtype)


def decode(pipe: Any, latents: list[torch.Tensor]) -> list[Image.Image]:
    """First-pass latents as pictures (a first pass stopped and kept partial)."""
    import torch

    with torch.no_grad():
        stacked = torch.cat(latents).to(pipe.vae.dtype)
        pixels = pipe.vae.decode(stacked / pipe.vae.config.scaling_factor, return_dict=False)[0]
    return pipe.image_processor.postprocess(pixels, output_type="pil")
