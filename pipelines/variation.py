"""The starting noise of a text-to-image job with a variation seed or a resized seed, as A1111 makes it: the seed's
noise, mixed spherically with the variation seed's by the variation strength; for a resized seed, that noise made at
the "from" size and laid in the middle of the seed's noise at the picture's size."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipelines.latents import slerp

if TYPE_CHECKING:
    import torch


def variation_noise(seed: int, subseed: int, strength: float, shape: tuple[int, int, int],
                    from_shape: tuple[int, int, int] | None, dtype: torch.dtype) -> torch.Tensor:
    """(1, C, H, W) noise for one picture; drawn as diffusers draws a picture's noise (one CPU generator per picture,
    seeded with its seed), so strength 0 at the picture's own size is exactly the seed's noise."""
    noise_shape = from_shape or shape
    noise = _randn(seed, noise_shape, dtype)
    if strength > 0:
        noise = slerp(noise, _randn(subseed, noise_shape, dtype), strength)
    if noise_shape == shape:
        return noise
    full = _randn(seed, shape, dtype)
    (_, height, width), (_, from_h, from_w) = shape, noise_shape
    dy, dx = (height - from_h) // 2, (width - from_w) // 2  # negative: the "from" noise is the larger, cropped
    h, w = min(height, from_h), min(width, from_w)
    ty, tx, sy, sx = max(dy, 0), max(dx, 0), max(-dy, 0), max(-dx, 0)
    full[:, :, ty:ty + h, tx:tx + w] = noise[:, :, sy:sy + h, sx:sx + w]
    return full


def _randn(seed: int, shape: tuple[int, int, int], dtype: torch.dtype) -> torch.Tensor:
    import torch

    return torch.randn((1, *shape), generator=torch.Generator(device="cpu").manual_seed(seed), dtype=dtype)
