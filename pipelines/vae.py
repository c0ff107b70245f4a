"""Variational autoencoders: sample the prior, reconstruct a photo, morph between photos, latent arithmetic.

A VAE (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR 2014) pairs an encoder q(z|x) with a decoder
p(x|z) and a KL term that pulls q towards the prior N(0, I). The models here are the KL-regularised autoencoders
of latent diffusion (Rombach et al., "High-Resolution Image Synthesis with Latent Diffusion Models", CVPR 2022),
diffusers' `AutoencoderKL`: one latent pixel per f × f image pixels, f = 2^(levels − 1) (8 for Stable Diffusion).
Their KL weight is tiny (1e-6), so the encoder's latents are far from N(0, I): prior samples show what the
decoder makes of typical noise (textures more than pictures), and photos are best explored through their own
latents, taken at the posterior mode so the same photo always gives the same latent.

- sample: z ~ N(0, T²·I) at any size (decoded in tiles above the model's native size), or, at the native size of
  a model that ships a fitted prior (`prior.safetensors`, see pipelines/latent_prior.py), from that mixture;
- reconstruct: encode → decode, with a comparison sheet and the PSNR;
- interpolate: a slerp or lerp path through the latents of 2–4 photos, returned as an animation;
- arithmetic: A − B + C on latents.
Latent maths runs in float32 on the CPU; only the networks run in the model's dtype. Every latent is decoded on
its own: batched convolutions differ from single ones in the last bits, which can flip a pixel, and one at a
time an image depends only on its latent (an animation's first frame is the reconstruction of image A, exactly).

torch and diffusers are imported where a model loads or runs: the studio's server imports this module for its
params and its model list, and never runs a model.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from PIL import Image

from pipelines.base import (
    Animation,
    BaseParams,
    ImageInputs,
    ImageResult,
    Interrupted,
    OnStatus,
    OnStep,
    Pipeline,
    PipelineError,
    ShouldStop,
    Workload,
    param,
)
from pipelines.diffusion_utils import pick_dtype
from pipelines.imaging import contact_sheet, frame_sheet, input_image, rgb, to_image, to_tensor, upscale
from pipelines.latents import MAX_SEED, interpolation_path, sample_noise
from pipelines.models import Library, ModelEntry, kinds
from pipelines.models.entries import read_model_config
from pipelines.models.hub import HUB_ID, download_hub_model, hub_entry
from pipelines.models.library import folder_entry

if TYPE_CHECKING:
    import torch

    from pipelines.latent_prior import GaussianMixturePrior

logger = logging.getLogger(__name__)

VAE_CLASS = "AutoencoderKL"
WEIGHTS = "diffusion_pytorch_model.safetensors"
HUB_FILES = ["config.json", WEIGHTS]  # a VAE repo may also hold .bin and .ckpt copies: fetch only these
# Models a fresh install can name without typing an id; any other hub id of an AutoencoderKL works too.
KNOWN_HUB_VAES = [
    ("stabilityai/sd-vae-ft-mse", "MIT", "",
     "Stable Diffusion 1.x VAE, decoder fine-tuned towards MSE: smoother faces and text (f = 8)"),
    ("stabilityai/sd-vae-ft-ema", "MIT", "",
     "Stable Diffusion 1.x VAE, decoder fine-tuned with EMA weights on L1 + LPIPS (f = 8)"),
    ("madebyollin/sdxl-vae-fp16-fix", "MIT", "",
     "SDXL VAE rescaled inside so it runs in fp16 without NaNs (f = 8)"),
]
MAX_SIDE = 2048
MAX_IMAGES = 16
MAX_FRAMES = 600
DIFF_GAIN = 4  # the difference map is amplified so a few levels of error are visible
PSNR_CAP = 100.0  # identical images have infinite PSNR, which JSON cannot carry
KEYFRAMES = ("image_a", "image_b", "image_c", "image_d")
NEEDS = {"sample": (), "reconstruct": ("image_a",), "interpolate": ("image_a", "image_b"),
         "arithmetic": ("image_a", "image_b", "image_c")}
ROLES = {"image_a": "the photo to start from", "image_b": "the second photo", "image_c": "the photo to add"}

Mode = Literal["sample", "reconstruct", "interpolate", "arithmetic"]
# the modes each field matters in (the UI hides it in the others)
SAMPLE, INTERPOLATE = ("sample",), ("interpolate",)
PHOTOS, MIXES = ("reconstruct", "interpolate", "arithmetic"), ("interpolate", "arithmetic")


@dataclass(frozen=True)
class VaeParams(BaseParams):
    mode: Mode = param("sample", label="Mode",
                       help="sample: decode random latents · reconstruct: encode and decode image A · "
                            "interpolate: an animation through images A–D · arithmetic: A − B + C")
    temperature: float = param(1.0, label="Temperature", minimum=0.0, maximum=3.0, step=0.05, modes=SAMPLE,
                               help="spread of the latents, z ~ N(0, T²·I) (0 decodes the zero latent); with a "
                                    "fitted prior, the spread around each mixture component (0: its centre)")
    num_images: int = param(4, label="Number of images", minimum=1, maximum=MAX_IMAGES, step=1, modes=SAMPLE,
                            help="image i comes from seed + i, so each can be made again alone")
    width: int = param(0, label="Width", minimum=0, maximum=MAX_SIDE, step=8, modes=SAMPLE,
                       help="0: the model's native size")
    height: int = param(0, label="Height", minimum=0, maximum=MAX_SIDE, step=8, modes=SAMPLE,
                        help="0: the model's native size")
    tiled: bool = param(True, label="Tiled above the native size",
                        help="encode and decode large images in overlapping tiles: far less memory")
    image_a: str = param("", label="Image A", kind="image", modes=PHOTOS)
    image_b: str = param("", label="Image B", kind="image", modes=MIXES,
                         help="interpolate: the second keyframe · arithmetic: subtracted")
    image_c: str = param("", label="Image C", kind="image", modes=MIXES,
                         help="interpolate: an optional third keyframe · arithmetic: added")
    image_d: str = param("", label="Image D", kind="image", modes=INTERPOLATE,
                         help="an optional fourth keyframe")
    path: Literal["slerp", "lerp"] = param("slerp", label="Path", modes=INTERPOLATE,
                                           help="spherical (keeps the latents' length) or straight")
    frames: int = param(48, label="Frames", minimum=2, maximum=MAX_FRAMES, step=1, modes=INTERPOLATE)
    fps: float = param(12.0, label="Frames per second", minimum=1.0, maximum=60.0, step=1.0, modes=INTERPOLATE)
    loop: bool = param(True, label="Loop back to image A", modes=INTERPOLATE, help="a seamless loop")
    upscale: int = param(1, label="Upscale ×", minimum=1, maximum=4, step=1,
                         help="a Lanczos resample for viewing: smoother, but no new detail")

    def check(self) -> None:
        super().check()
        for name in ("width", "height"):
            value = getattr(self, name)
            if value % 8:
                raise ValueError(f"`{name}` must be 0 (the model's native size) or a multiple of 8, got {value}")
        for name in NEEDS[self.mode]:
            if not getattr(self, name):
                raise ValueError(f"`{name}` is required in {self.mode} mode: {ROLES[name]}")

    def workload(self) -> Workload:
        if self.mode == "sample":
            return Workload(self.num_images, self.width * self.height * self.upscale**2)
        return Workload(self.frames if self.mode == "interpolate" else 1, 0)  # sized by image A


class VaePipeline(Pipeline):
    kind = "vae"
    Params = VaeParams

    def __init__(self, vae: Any, *, device: str, model_hash: str | None,
                 prior: GaussianMixturePrior | None = None) -> None:
        self.vae = vae  # an attribute, so Pipeline.nbytes counts its weights
        self.device = device
        self.model_hash = model_hash
        self.prior = prior  # a mixture fitted to the training latents, sampled instead of N(0, I) at native size
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.latent_channels = int(vae.config.latent_channels)
        size = vae.config.sample_size
        self.native = (size[1], size[0]) if isinstance(size, (list, tuple)) else (size, size)  # (width, height)
        self._lock = threading.Lock()  # tiling is a switch on the shared module: one job at a time

    # -- models -----------------------------------------------------------------------------------------
    model_kind = kinds.VAE
    hub_ids = True

    @classmethod
    def list_models(cls, library: Library) -> list[ModelEntry]:
        entries = [hub_entry(repo, licence, restriction, about, kind="vae")
                   for repo, licence, restriction, about in KNOWN_HUB_VAES]
        return entries + [folder_entry(f, "vae", _vae_fields(f.path, f.config), library)
                          for f in library.files(kinds.VAE) if f.format == "folder"]

    @classmethod
    def load(cls, source: str | Path, *, device: str, dtype: str | None = None, on_status: OnStatus | None = None,
             **options: Any) -> VaePipeline:
        from pipelines.latent_prior import GaussianMixturePrior

        path = Path(source)
        if path.is_dir() and not options.get("hub"):  # a hub id is never a folder of the working directory
            folder = path
            model_hash = None  # the studio records the weights' hash, computed in the background
        elif HUB_ID.match(str(source)):
            folder = download_hub_model(str(source), on_status, allow_patterns=HUB_FILES)
            model_hash = folder.name[:10]  # the snapshot's commit
        else:
            raise PipelineError(f"VAE model {str(source)!r} is neither a folder nor a Hugging Face hub id")
        vae = _load_vae(folder, pick_dtype(device, dtype)).to(device)
        logger.info("loaded VAE %s on %s in %s", source, device, vae.dtype)
        return cls(vae, device=device, model_hash=model_hash, prior=GaussianMixturePrior.load(folder))

    # -- one job ----------------------------------------------------------------------------------------
    def __call__(self, params: VaeParams, *, seed: int, on_step: OnStep | None = None,
                 should_stop: ShouldStop | None = None, inputs: ImageInputs | None = None) -> ImageResult:
        import torch

        info: dict[str, Any] = {"mode": params.mode, "model_hash": self.model_hash}
        warnings: list[str] = []
        notes: list[str] = []
        with self._lock, torch.inference_mode():
            if params.tiled:
                self.vae.enable_tiling()  # diffusers tiles only what is larger than the model's sample_size
            else:
                self.vae.disable_tiling()
            if params.mode == "sample":
                result = self._sample(params, seed, _Steps(params.num_images, on_step, should_stop), info)
            else:
                images = self._inputs(params, inputs or {}, warnings)
                info.update(self._size_info(*images[0].size, params.tiled))
                passes = len(images) + (params.frames if params.mode == "interpolate" else 1)
                steps = _Steps(passes, on_step, should_stop)
                if params.mode == "reconstruct":
                    result = self._reconstruct(images[0], seed, steps, info, notes)
                elif params.mode == "interpolate":
                    result = self._interpolate(params, images, seed, steps)
                else:
                    result = self._arithmetic(images, seed, steps)
        if params.upscale > 1:
            notes.append(f"upscaled ×{params.upscale} with a Lanczos resample for viewing: no new detail")
            # an animation's sheet is built from frames already upscaled (and kept under its pixel budget)
            result.images = [image if i in result.animations else upscale(image, params.upscale)
                             for i, image in enumerate(result.images)]
        if warnings:
            info["warnings"] = warnings
        if notes:
            info["notes"] = notes
        result.info = info
        return result

    def _sample(self, params: VaeParams, seed: int, steps: _Steps, info: dict[str, Any]) -> ImageResult:
        import torch

        width, height = params.width or self.native[0], params.height or self.native[1]
        for name, value in (("width", width), ("height", height)):
            if value % self.factor:
                raise PipelineError(f"`{name}` must be a multiple of {self.factor} for this model, got {value}")
        info.update(self._size_info(width, height, params.tiled))
        shape = (1, self.latent_channels, height // self.factor, width // self.factor)  # (B, C, H/f, W/f)
        seeds = [(seed + i) % (MAX_SEED + 1) for i in range(params.num_images)]
        prior = self.prior if self.prior is not None and self.prior.dim == math.prod(shape) else None
        info["prior"] = f"fitted mixture of {prior.components} Gaussians" if prior else "N(0, I)"

        def draw(s: int) -> torch.Tensor:
            if prior is None:
                return sample_noise(shape, s) * params.temperature
            return prior.sample(1, torch.Generator("cpu").manual_seed(s), params.temperature).view(shape)

        return ImageResult([self._decode(draw(s), steps) for s in seeds], seeds)

    def _reconstruct(self, original: Image.Image, seed: int, steps: _Steps, info: dict[str, Any],
                     notes: list[str]) -> ImageResult:
        rebuilt = self._decode(self._encode(original, steps), steps)
        psnr = _psnr(original, rebuilt)
        info["psnr_db"] = round(psnr, 2)
        notes.append(f"PSNR {psnr:.2f} dB (reconstruction against the input; higher is closer)")
        sheet = contact_sheet([original, rebuilt, _difference(original, rebuilt)], columns=3)
        return ImageResult([rebuilt, sheet], [seed, seed])

    def _interpolate(self, params: VaeParams, images: list[Image.Image], seed: int, steps: _Steps) -> ImageResult:
        keys = [self._encode(image, steps) for image in images]
        path = interpolation_path(keys, params.frames, loop=params.loop, spherical=params.path == "slerp")
        frames = [upscale(self._decode(z, steps), params.upscale) for z in path]
        animation = Animation(frames, params.fps, loop=params.loop)
        return ImageResult([frame_sheet(frames)], [seed], animations={0: animation})

    def _arithmetic(self, images: list[Image.Image], seed: int, steps: _Steps) -> ImageResult:
        a, b, c = (self._encode(image, steps) for image in images)
        return ImageResult([self._decode(a - b + c, steps)], [seed])

    def _size_info(self, width: int, height: int, tiled: bool) -> dict[str, Any]:
        return {"size": f"{width}x{height}", "tiled": tiled and (width > self.native[0] or height > self.native[1])}

    # -- the two networks -------------------------------------------------------------------------------
    def _encode(self, image: Image.Image, steps: _Steps) -> torch.Tensor:
        """RGB image → its posterior mode, (1, C, H/f, W/f) float32 on the CPU."""
        steps.before()
        pixels = to_tensor(image, self.device) * 2 - 1  # (1, 3, H, W) in [−1, 1], the range VAEs train on
        latent = self.vae.encode(pixels.to(self.vae.dtype)).latent_dist.mode().float().cpu()
        steps.after(None)
        return latent

    def _decode(self, latent: torch.Tensor, steps: _Steps) -> Image.Image:
        import torch

        steps.before()
        pixels = self.vae.decode(latent.to(self.device, self.vae.dtype)).sample.float()  # (1, 3, H, W)
        if not torch.isfinite(pixels).all():
            raise PipelineError("the VAE produced NaN values (in fp16 some VAEs overflow): run it in fp32, or use "
                                "madebyollin/sdxl-vae-fp16-fix")
        image = to_image((pixels + 1) / 2)
        steps.after(image)
        return image

    def _inputs(self, params: VaeParams, inputs: ImageInputs, warnings: list[str]) -> list[Image.Image]:
        """The mode's images, RGB, centre-cropped to multiples of f; later ones brought to image A's size."""
        names = [n for n in (KEYFRAMES if params.mode == "interpolate" else NEEDS[params.mode]) if getattr(params, n)]
        images: list[Image.Image] = []
        for name in names:
            image, label = rgb(input_image(inputs, getattr(params, name), name)), _label(name)
            width, height = image.size
            if max(width, height) > MAX_SIDE:
                raise PipelineError(f"{label} is {width}x{height}; at most {MAX_SIDE} pixels per side, please "
                                    "downscale it")
            fitted = (width - width % self.factor, height - height % self.factor)
            if images and fitted != images[0].size:
                target = images[0].size
                warnings.append(f"{label} was resized from {width}x{height} to {target[0]}x{target[1]} to match "
                                "image A")
                image = image.resize(target, Image.Resampling.LANCZOS)
            elif fitted != image.size:
                if 0 in fitted:
                    raise PipelineError(f"{label} is {width}x{height}; this model needs at least "
                                        f"{self.factor}x{self.factor} pixels")
                warnings.append(f"{label} was centre-cropped from {width}x{height} to {fitted[0]}x{fitted[1]} "
                                f"(this model needs multiples of {self.factor})")
                left, top = (width - fitted[0]) // 2, (height - fitted[1]) // 2
                image = image.crop((left, top, left + fitted[0], top + fitted[1]))
            images.append(image)
        return images


class _Steps:
    """One step per network pass: Stop is polled before each, progress reported after each."""

    def __init__(self, total: int, on_step: OnStep | None, should_stop: ShouldStop | None) -> None:
        self.total, self.done = total, 0
        self.on_step, self.should_stop = on_step, should_stop

    def before(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Interrupted(f"stopped after {self.done} of {self.total} steps")

    def after(self, preview: Image.Image | None) -> None:
        self.done += 1
        if self.on_step is not None:
            self.on_step(self.done, self.total, preview)


def _label(name: str) -> str:
    return f"image {name[-1].upper()}"


def _psnr(reference: Image.Image, test: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB over the 8-bit RGB values."""
    diff = np.asarray(reference, dtype=np.float64) - np.asarray(test, dtype=np.float64)
    mse = float(np.mean(diff * diff))
    return PSNR_CAP if mse == 0 else min(PSNR_CAP, 10 * math.log10(255.0**2 / mse))


def _difference(a: Image.Image, b: Image.Image) -> Image.Image:
    diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)) * DIFF_GAIN
    return Image.fromarray(np.clip(diff, 0, 255).astype(np.uint8))


# -- model folders --------------------------------------------------------------------------------------
def _load_vae(folder: Path, torch_dtype: torch.dtype) -> Any:
    import torch
    from diffusers import AutoencoderKL

    config = read_model_config(folder)
    if config is None:
        hint = f"; its VAE is in {folder / 'vae'}" if (folder / "vae" / "config.json").is_file() else ""
        raise PipelineError(f"{folder} is not a VAE model folder: no readable config.json{hint}")
    if config.get("_class_name") != VAE_CLASS:
        raise PipelineError(f"{folder} holds a {config.get('_class_name') or 'model of unknown class'}, not an "
                            f"{VAE_CLASS} (VAE)")
    if torch_dtype == torch.float16 and config.get("force_upcast", True):
        # diffusers' own flag for VAEs whose activations overflow fp16 (every SD VAE but the fp16-fix ones)
        logger.info("%s overflows in fp16 (force_upcast): running it in fp32", folder)
        torch_dtype = torch.float32
    try:
        return AutoencoderKL.from_pretrained(folder, dtype=torch_dtype, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise PipelineError(f"cannot load the VAE in {folder}: {e}") from e


def _vae_fields(folder: Path, config: Mapping[str, Any]) -> dict[str, Any]:
    factor = 2 ** (len(config.get("block_out_channels", [0])) - 1)
    if (folder / WEIGHTS).is_file() or (folder / f"{WEIGHTS}.index.json").is_file():
        return {"description": f"AutoencoderKL folder (f = {factor})"}
    return {"description": f"AutoencoderKL folder (f = {factor})", "status": "refused: no safetensors weights",
            "refusal": f"VAE folder {folder.name} has no {WEIGHTS}; pickle weights (.bin) are not loaded, convert "
                       "them to safetensors"}
