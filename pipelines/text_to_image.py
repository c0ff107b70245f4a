"""Text-to-image, img2img and inpainting with Stable Diffusion-family models (diffusers).

One loaded model serves all three modes: the img2img and inpainting pipelines are made from the loaded one
with diffusers' `from_pipe`, which shares every component (no second copy in memory). Models come from the
Hugging Face hub (by id), a local diffusers folder, or a single A1111-style `.safetensors` file (see
`pipelines/single_file.py`). Sampler names are AUTOMATIC1111's, mapped to diffusers schedulers.

torch and diffusers are imported where a model loads or runs: the studio's server imports this module for its
params and its model list, and never runs a model.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from pipelines.base import (
    BatchItem,
    ImageInputs,
    ImageResult,
    Interrupted,
    OnStatus,
    OnStep,
    Pipeline,
    PipelineError,
    ShouldStop,
)
from pipelines.diffusion_utils import make_scheduler, model_family, pick_dtype
from pipelines.drawn_prompts import run_each_drawn
from pipelines.embeddings import EmbeddingSlots
from pipelines.hires_fix import run_hires
from pipelines.imaging import input_image
from pipelines.inpaint_area import blurred, outpaint_canvas, prefilled
from pipelines.loras import LoraSlots
from pipelines.model_sources import diffusers_models, load_diffusers_pipeline
from pipelines.models import Library, ModelEntry, kinds
from pipelines.prompts.encoding import clip_conditioning, plain_text
from pipelines.prompts.sdxl import sdxl_conditioning
from pipelines.refiner import Refiners, run_refined
from pipelines.sd_upscale import run_sd_upscale
from pipelines.step_callback import StepCallback
from pipelines.text_to_image_params import MIN_SIDE, Sampler, TextToImageParams
from pipelines.tiling import seamless
from pipelines.upscale import UpscalerCache
from pipelines.variation import variation_noise

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

__all__ = ["Sampler", "TextToImageParams", "TextToImagePipeline", "native_shape"]


class TextToImagePipeline(Pipeline):
    kind = "text_to_image"
    Params = TextToImageParams

    def __init__(self, pipe: Any, *, device: str, source: str, model_hash: str | None) -> None:
        self.pipe = pipe  # the text-to-image diffusers pipeline; img2img/inpaint are made from it on demand
        self.device = device
        self.source = source
        self.model_hash = model_hash
        self.family = model_family(pipe)
        self._derived: dict[str, Any] = {"txt2img": pipe}
        self._default_scheduler = pipe.scheduler
        self._lock = threading.Lock()  # one job at a time per loaded model: schedulers hold per-run state
        self.loras = LoraSlots(pipe)
        self.embeddings = EmbeddingSlots(pipe)
        self.upscalers = UpscalerCache(device)  # hires fix's upscaler networks
        self.refiners = Refiners(device, pipe.unet.dtype)  # the SDXL refiner a job names, kept for the next

    model_kind = kinds.CHECKPOINT
    prompt_networks = (kinds.LORA, kinds.EMBEDDING)
    hub_ids = True

    @classmethod
    def list_models(cls, library: Library) -> list[ModelEntry]:
        return diffusers_models(library)

    @classmethod
    def load(cls, source: str | Path, *, device: str, dtype: str | None = None, on_status: OnStatus | None = None,
             **options: Any) -> TextToImagePipeline:
        # The dtype is the CPU speed lever that measured (benchmarks/text_to_image.py): channels_last was no
        # faster for the UNet and slower for the VAE, so modules keep diffusers' default memory format.
        torch_dtype = pick_dtype(device, dtype)
        pipe, model_hash = load_diffusers_pipeline(str(source), torch_dtype=torch_dtype, on_status=on_status,
                                                   allow_pickle=bool(options.get("allow_pickle")),
                                                   hub=bool(options.get("hub")))
        pipe.set_progress_bar_config(disable=True)
        if options.get("low_vram") and device.startswith("cuda"):
            # each component moves to the GPU only for its forward pass: SDXL fits in ~4 GB of VRAM
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe = pipe.to(device)
        if options.get("vae_tiling"):
            pipe.vae.enable_tiling()
        logger.info("loaded %s on %s in %s", source, device, torch_dtype)
        return cls(pipe, device=device, source=str(source), model_hash=model_hash)

    def tensors(self) -> Iterator[torch.Tensor]:
        import torch

        for m in [*self.pipe.components.values(), *self.upscalers.modules(), *self.refiners.modules()]:
            if isinstance(m, torch.nn.Module):
                yield from m.parameters()
                yield from m.buffers()

    def __call__(self, params: TextToImageParams, *, seed: int, on_step: OnStep | None = None,
                 should_stop: ShouldStop | None = None, inputs: ImageInputs | None = None,
                 files: Mapping[str, str] | None = None) -> ImageResult:
        """One job; `files` are the paths of the LoRAs its prompt's tags name (the studio resolves them)."""
        files = files or {}

        stop = should_stop or (lambda: False)

        def run_one(p: TextToImageParams, s: int, step: OnStep | None) -> ImageResult:
            with self.loras.applied(p.networks(), files):
                self.embeddings.ensure({key.partition(":")[2]: path for key, path in files.items()
                                        if key.startswith(f"{kinds.EMBEDDING}:")})
                if p.enable_hr:
                    return run_hires(self._run, self.pipe, self.upscalers, p, s, step, stop, inputs or {}, files)
                if p.refiner_checkpoint:
                    return run_refined(self._run, self.refiners, self.family, p, s, step, stop, inputs or {}, files)
                if p.sd_upscale:
                    tile = (p.width or self.native_size(), p.height or self.native_size())
                    return run_sd_upscale(self._run, self.upscalers, p, tile, s, step, stop, inputs or {}, files)
                return self._run(p, s, step, stop, inputs or {})

        with self._lock, self._tiled(params):
            return run_each_drawn(params, seed, files, on_step, run_one) if params.dynamic else run_one(
                params, seed, on_step)

    def _tiled(self, params: TextToImageParams) -> AbstractContextManager[object]:
        return seamless(self.pipe.unet, self.pipe.vae) if params.tiling else nullcontext()

    def _run(self, params: TextToImageParams, seed: int, on_step: OnStep | None, should_stop: ShouldStop,
             inputs: ImageInputs, output_type: str = "pil", extra: Mapping[str, Any] | None = None) -> ImageResult:
        """One pass of the job's pictures; with `output_type` "latent", its images are the undecoded latents
        (1, C, h, w) each, for hires fix's second pass or the refiner; `extra` goes to the diffusers call (the
        refiner's `denoising_end`)."""
        import torch

        # 1. the sub-pipeline for the mode, sharing the loaded components, with the chosen sampler
        pipe = self._pipeline_for(params.mode)
        pipe.scheduler = make_scheduler(params.sampler, self._default_scheduler)
        warnings: list[str] = []
        kwargs = {**self._mode_kwargs(params, inputs, seed), **self._prompt_kwargs(params, warnings)}
        conditioning = kwargs.pop("conditioning", None)
        original = kwargs.pop("original", None)  # inpainting: the picture laid back over what the mask leaves
        images: list[Image.Image] = []
        seeds: list[int] = []
        stopped = False
        for batch in range(params.batch_count):
            # 2. one generator per image, so image i of a batch can be reproduced alone from seed + i
            batch_seeds = [seed + batch * params.batch_size + i for i in range(params.batch_size)]
            generators = [torch.Generator(device="cpu").manual_seed(s) for s in batch_seeds]
            if params.varies:  # the starting noise of each picture: its seed's, varied or resized (A1111's)
                kwargs["latents"] = self._variation_latents(params, seed, batch_seeds, kwargs)
            callback = StepCallback([on_step], params.batch_size, should_stop, self.family, batch, params.batch_count,
                                    conditioning)
            # 3. denoise; the callback reports each step with a cheap preview, interrupts on Stop, and swaps the
            # prompt's embeddings where prompt editing says
            output = pipe(
                num_inference_steps=params.num_steps, guidance_scale=params.cfg_scale,
                num_images_per_prompt=params.batch_size, generator=generators, callback_on_step_end=callback,
                callback_on_step_end_tensor_inputs=callback.tensor_inputs, output_type=output_type, **kwargs,
                **(extra or {}),
            )
            # 4. a stopped run still decodes what it had: keep it only when the user asked for it
            if callback.not_finite:
                raise _not_finite(callback.last_step)
            if callback.stopped:
                stopped = True
                if not params.keep_partial:
                    raise Interrupted(f"stopped at step {callback.last_step} of {params.num_steps}")
            if output_type == "latent":
                images += list(output.images.split(1))
            elif params.mode == "inpaint":
                images += [_overlay(img, original, kwargs["mask_image"]) for img in output.images]
            else:
                images += output.images
            seeds += batch_seeds
            if stopped:
                break
        info = self._info(params, kwargs, warnings)
        if images and isinstance(images[0], Image.Image):  # only-masked inpainting keeps the whole picture's size
            info["size"] = "x".join(map(str, images[0].size))
        if stopped:
            info["partial"] = True
        return ImageResult(images=images, seeds=seeds, info=info)

    def _variation_latents(self, params: TextToImageParams, seed: int, seeds: list[int],
                           kwargs: dict[str, Any]) -> torch.Tensor:
        """Picture i of the job starts from seed + i and variation seed + i, as A1111 counts them. A variation seed
        of -1 reaching the pipeline (the studio draws one at submit) is the seed + 1."""
        import torch

        factor, channels = self.pipe.vae_scale_factor, self.pipe.unet.config.in_channels
        shape = (channels, kwargs["height"] // factor, kwargs["width"] // factor)
        resized = (channels, params.seed_resize_from_h // factor, params.seed_resize_from_w // factor)
        dtype = kwargs["prompt_embeds"].dtype if "prompt_embeds" in kwargs else self.pipe.unet.dtype
        subseed = params.subseed if params.subseed >= 0 else seed + 1
        return torch.cat([variation_noise(s, (subseed + s - seed) % 2**32, params.subseed_strength, shape,
                                          resized if params.seed_resize_from_w else None, dtype) for s in seeds])

    def _info(self, params: TextToImageParams, kwargs: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
        if "width" in kwargs:
            size = (kwargs["width"], kwargs["height"])
        else:  # img2img: the picture as resized for the job (latents come at the params' size)
            size = kwargs["image"].size if isinstance(kwargs["image"], Image.Image) else (params.width, params.height)
        info: dict[str, Any] = {"mode": params.mode, "model_hash": self.model_hash, "family": self.family,
                                "size": f"{size[0]}x{size[1]}"}
        if warnings:
            info["warnings"] = warnings
        return info

    def run_batch(self, jobs: Sequence[BatchItem], *, should_stop: ShouldStop | None = None) -> list[ImageResult]:
        """txt2img jobs with one `batch_key`: their prompts go through the UNet together, each image still from
        its own job's seed. Prompts that cannot share one tensor (CLIP prompts of different numbers of
        75-token chunks) run one job after another instead."""
        stop = should_stop or (lambda: False)
        with self._lock:
            warnings: list[list[str]] = [[] for _ in jobs]
            prompts = [self._prompt_kwargs(job.params, w) for job, w in zip(jobs, warnings, strict=True)]
            merged = _merge_prompts(prompts)
            if merged is not None:
                with self._tiled(jobs[0].params):  # a batch shares every param but the prompts
                    return self._run_together(jobs, merged, warnings, stop)
        return super().run_batch(jobs, should_stop=should_stop)

    def _run_together(self, jobs: Sequence[BatchItem], prompts: dict[str, Any], warnings: list[list[str]],
                      should_stop: ShouldStop) -> list[ImageResult]:
        import torch

        first: TextToImageParams = jobs[0].params
        pipe = self._pipeline_for("txt2img")
        pipe.scheduler = make_scheduler(first.sampler, self._default_scheduler)
        size = self._mode_kwargs(first, {})
        per_job = first.batch_size
        seeds = [[job.seed + i for i in range(per_job)] for job in jobs]
        generators = [torch.Generator(device="cpu").manual_seed(s) for group in seeds for s in group]
        callback = StepCallback([job.on_step for job in jobs], per_job, should_stop, self.family)
        output = pipe(num_inference_steps=first.num_steps, guidance_scale=first.cfg_scale,
                      num_images_per_prompt=per_job, generator=generators, callback_on_step_end=callback,
                      callback_on_step_end_tensor_inputs=["latents"], **size, **prompts)
        if callback.not_finite:
            raise _not_finite(callback.last_step)
        if callback.stopped:
            raise Interrupted(f"stopped at step {callback.last_step} of {first.num_steps}")
        return [ImageResult(images=output.images[j * per_job:(j + 1) * per_job], seeds=seeds[j],
                            info={**self._info(job.params, size, warnings[j]), "batched_with": len(jobs) - 1})
                for j, job in enumerate(jobs)]

    def _pipeline_for(self, mode: str) -> Any:
        if mode not in self._derived:
            from diffusers import AutoPipelineForImage2Image, AutoPipelineForInpainting

            auto = AutoPipelineForImage2Image if mode == "img2img" else AutoPipelineForInpainting
            derived = auto.from_pipe(self.pipe)  # shares unet, vae, text encoders: no second copy
            derived.set_progress_bar_config(disable=True)
            self._derived[mode] = derived
        return self._derived[mode]

    def native_size(self) -> int:
        """The side the model was trained at: the UNet's latent size times the VAE's downsampling."""
        return int(self.pipe.unet.config.sample_size) * int(self.pipe.vae_scale_factor)

    def _mode_kwargs(self, params: TextToImageParams, inputs: ImageInputs, seed: int = 0) -> dict[str, Any]:
        if params.mode == "txt2img":
            return {"width": params.width or self.native_size(), "height": params.height or self.native_size()}
        image = input_image(inputs, params.init_image, "init_image")
        if not isinstance(image, Image.Image):  # hires fix's enlarged latents, already at the second pass's size
            return {"image": image, "strength": params.strength}
        image = image.convert("RGB")
        mask = None
        if params.mask:
            mask = input_image(inputs, params.mask, "mask")
            mask = mask.getchannel("A") if "A" in mask.getbands() else mask.convert("L")
        if params.outpainting:
            mask = mask.resize(image.size) if mask is not None and mask.size != image.size else mask
            image, mask = outpaint_canvas(image, mask, params.outpaints, params.outpaint_fill, seed)
        # size 0: an outpainted canvas as it is (in multiples of 8); img2img and inpaint the picture's own shape at
        # about the model's native area
        width, height = params.width, params.height
        if not (width and height):
            width, height = _eights(image.size) if params.outpainting else native_shape(image.size, self.native_size())
        size = (width, height)
        only_masked = params.mode == "inpaint" and params.inpaint_full_res
        if image.size != size and not only_masked:  # only masked: diffusers crops and resizes the masked area
            image = image.resize(size, Image.Resampling.LANCZOS)  # as A1111's "just resize"
        if mask is not None and mask.size != image.size:
            mask = mask.resize(image.size)  # once, from the mask's own size
        kwargs: dict[str, Any] = {"image": image, "strength": params.strength}
        if params.mode == "inpaint" and mask is not None:
            soft = blurred(mask, params.mask_blur)
            kwargs.update(image=prefilled(image, soft, params.inpainting_fill, seed), original=image, mask_image=soft,
                          width=width, height=height)
            if only_masked:
                kwargs["padding_mask_crop"] = params.inpaint_full_res_padding
        return kwargs

    def _prompt_kwargs(self, params: TextToImageParams, warnings: list[str]) -> dict[str, Any]:
        """SD 1.x and SDXL: our own encoding (pipelines.prompts): A1111's emphasis, BREAK and 75-token chunks, clip
        skip, SDXL's pooled embeddings, and a `conditioning` per stretch of steps for prompt editing, which the step
        callback swaps in. A sentence encoder (the bundled model's MiniLM): diffusers' encoding of the words, up to
        the tokenizer's length."""
        steps = _steps_run(params)
        if self.family == "sentence":
            prompt, negative = plain_text(params.prompt_text, steps), plain_text(params.negative_prompt, steps)
            return _sentence_prompt(self.pipe.tokenizer, prompt, negative, params.clip_skip, warnings)
        encode = sdxl_conditioning if self.family == "sdxl" else clip_conditioning
        # a multi-vector embedding's name stands for all its tokens, in each tokenizer
        conditioning = encode(self.pipe, params.prompt_text, params.negative_prompt, steps, params.clip_skip, warnings,
                              expand=self.embeddings.expand)
        kwargs: dict[str, Any] = conditioning.at(1).kwargs()
        if conditioning.changes:
            kwargs["conditioning"] = conditioning  # taken out before the call: the step callback's
        return kwargs


def _eights(size: tuple[int, int]) -> tuple[int, int]:
    """A size in the nearest multiples of 8 (the latent grid)."""
    return max(MIN_SIDE, round(size[0] / 8) * 8), max(MIN_SIDE, round(size[1] / 8) * 8)


def _steps_run(params: TextToImageParams) -> int:
    """How many denoising steps a job runs: img2img and inpainting start part way, as diffusers counts them."""
    if params.mode == "txt2img":
        return params.num_steps
    return max(1, min(int(params.num_steps * params.strength), params.num_steps))


def native_shape(size: tuple[int, int], native: int) -> tuple[int, int]:
    """A width and height in multiples of 8 with the aspect ratio of `size` and about native² pixels."""
    scale = math.sqrt(native * native / (size[0] * size[1]))
    return tuple(max(MIN_SIDE, round(side * scale / 8) * 8) for side in size)  # type: ignore[return-value]


def _not_finite(step: int) -> PipelineError:
    return PipelineError(f"the model produced NaN values at step {step} (in half precision some models overflow): "
                         "try fewer CFG, another sampler, or fp32")


def _merge_prompts(prompts: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several jobs' prompt arguments as one call's: embeddings stacked (SDXL's pooled ones too), or text in lists
    (diffusers encodes a list of prompts as a batch). None when they cannot be merged: embeddings of different
    lengths."""
    import torch

    if any("conditioning" in p for p in prompts):
        return None  # prompt editing swaps one job's embeddings between steps: such a job runs alone
    if all("prompt_embeds" in p for p in prompts):
        names = list(prompts[0])
        if len({tuple(p[name].shape for name in names) for p in prompts}) > 1:
            return None
        return {name: torch.cat([p[name] for p in prompts]) for name in names}
    # an empty negative prompt is what diffusers uses for None
    return {"prompt": [p["prompt"] for p in prompts], "negative_prompt": [p["negative_prompt"] or "" for p in prompts]}


def _sentence_prompt(tokenizer: Any, prompt: str, negative: str, clip_skip: int,
                     warnings: list[str]) -> dict[str, Any]:
    limit = tokenizer.model_max_length - 2  # [CLS] and [SEP]
    for name, text in (("prompt", prompt), ("negative prompt", negative)):
        count = _token_count(tokenizer, text)
        if count > limit:
            warnings.append(f"the {name} is {count} tokens; this model reads the first {limit}")
    if clip_skip > 1:
        warnings.append("clip skip applies to CLIP text encoders only; this model ignored it")
    return {"prompt": prompt, "negative_prompt": negative or None}


def _token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False).input_ids) if text else 0


def _overlay(generated: Image.Image, original: Image.Image, mask: Image.Image) -> Image.Image:
    """Outside the mask the original pixels come back exactly (as A1111 does): the VAE's round trip would
    otherwise soften parts of the picture the user did not ask to change."""
    return Image.composite(generated, original, mask)

