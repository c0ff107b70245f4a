"""Shared pieces of the diffusion pipelines: A1111 sampler names → diffusers schedulers, the dtype and CPU
speed choices, and cheap latent previews."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from PIL import Image

# torch is imported by the functions that compute: the sampler table is pure data, and the text-to-image module
# imports this one at its top, which the studio's server imports (for its params) without loading torch.
if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# A1111 sampler name → (diffusers scheduler class, config overrides). "Automatic" keeps the model's own.
SAMPLERS: dict[str, tuple[str, dict[str, Any]]] = {
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                            "use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}

# Linear maps from a latent pixel to RGB, fitted on decoded images (the "approx cheap" previews of A1111):
# rows are latent channels, columns R, G, B. Facts about the SD VAEs' latent spaces.
LATENT_RGB = {
    "sd": [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
           [-0.2120, -0.2616, -0.7177]],
    "sdxl": [[0.3920, 0.4054, 0.4549], [-0.2634, -0.0196, 0.0653], [0.0568, 0.1687, -0.0755],
             [-0.3112, -0.2359, -0.2076]],
}


def make_scheduler(sampler: str, default: Any) -> Any:
    """A fresh scheduler for `sampler`, built from the model's own scheduler config (betas, offsets…)."""
    if sampler == "Automatic":
        return default.__class__.from_config(default.config)
    try:
        class_name, overrides = SAMPLERS[sampler]
    except KeyError:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of: Automatic, {', '.join(SAMPLERS)}") from None
    import diffusers

    cls = getattr(diffusers, class_name)
    return cls.from_config(default.config, **overrides)


def model_family(pipe: Any) -> str:
    """"sdxl", "sd" (SD 1.x/2.x with a CLIP text encoder) or "sentence" (an SD pipeline whose text encoder is a
    BERT-style sentence encoder, like the bundled model's MiniLM: no CLIP start/end tokens, no clip skip)."""
    if type(pipe).__name__.startswith("StableDiffusionXL"):
        return "sdxl"
    tokenizer = getattr(pipe, "tokenizer", None)
    return "sentence" if tokenizer is not None and tokenizer.bos_token_id is None else "sd"


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 matmuls run several times faster than fp32. Without them bf16 is emulated and
    slower than fp32, so it is not a default there."""
    import torch

    try:
        return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())
    except AttributeError:  # an older or newer torch without these probes: stay on the safe side
        return False


def pick_dtype(device: str, requested: str | None = None) -> torch.dtype:
    """fp16 on CUDA, bf16 on a CPU with bf16 hardware, else fp32; `requested` ("fp32", "bf16", "fp16") wins."""
    import torch

    names = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
    if requested:
        try:
            return names[requested]
        except KeyError:
            raise ValueError(f"unknown dtype {requested!r}; use one of {', '.join(names)}") from None
    if device.startswith("cuda"):
        return torch.float16
    return torch.bfloat16 if cpu_has_fast_bf16() else torch.float32


def latent_preview(latents: torch.Tensor, family: str) -> Image.Image:
    """A small RGB picture of one latent (C, H, W) without running the VAE: a fixed linear map per pixel."""
    import torch

    latents = latents.detach().float().cpu()
    channels = latents.shape[0]
    if channels == 4 and family in ("sd", "sdxl"):  # fitted to Stable Diffusion's VAEs, not to other latent spaces
        factors = torch.tensor(LATENT_RGB["sdxl" if family == "sdxl" else "sd"])  # (4, 3)
        rgb = torch.einsum("chw,cr->rhw", latents, factors)  # (3, H, W), roughly in [-1, 1]
        rgb = (rgb + 1) / 2
    else:  # an unknown latent space: show its first three channels, normalised
        rgb = latents[:3] if channels >= 3 else latents[:1].expand(3, -1, -1)
        rgb = (rgb - rgb.amin()) / (rgb.amax() - rgb.amin() + 1e-6)
    array = (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()  # (H, W, 3)
    return Image.fromarray(array).resize((latents.shape[2] * 4, latents.shape[1] * 4), Image.Resampling.BILINEAR)
