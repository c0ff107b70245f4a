"""Latent-space tools shared by the GAN and VAE generators: seed lists, noise, interpolation paths and walks.

Spherical interpolation follows Shoemake, "Animating rotation with quaternion curves" (SIGGRAPH 1985), as
White, "Sampling Generative Networks" (2016) recommends for Gaussian latents: a straight line between two
Gaussian samples passes near the origin, where no training sample lived, and decodes to washed-out images.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Literal

# torch is imported by the functions that draw or mix latents: `NoiseType`, `MAX_SEED` and `parse_seeds` are what
# params need, and the studio's server checks params without loading torch.
if TYPE_CHECKING:
    import torch

NoiseType = Literal["gaussian", "uniform", "spherical"]
MAX_SEED = 2**32 - 1
_SEED_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_seeds(text: str, *, limit: int) -> list[int]:
    """"7", "1, 5, 9" or "10-20" (ranges inclusive, mixable) → seeds in the order written.

    Raises ValueError naming the bad item: not a number, out of 0…2³²−1, a reversed range, or more than
    `limit` seeds in all.
    """
    seeds: list[int] = []
    for item in text.split(","):
        if not item.strip():
            continue
        match = _SEED_ITEM.match(item)
        if match is None:
            raise ValueError(f"`seeds`: {item.strip()[:40]!r} is not a seed or a range like 10-20")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
        if last > MAX_SEED:
            raise ValueError(f"`seeds`: {last} is out of range; seeds go from 0 to {MAX_SEED}")
        if last < first:
            raise ValueError(f"`seeds`: the range {first}-{last} runs backwards; write {last}-{first}")
        if len(seeds) + (last - first + 1) > limit:
            raise ValueError(f"`seeds` lists more than {limit} seeds; ask for fewer")
        seeds.extend(range(first, last + 1))
    return seeds


def sample_noise(shape: tuple[int, ...], seed: int, noise: NoiseType = "gaussian") -> torch.Tensor:
    """One latent of `shape` from its own seed, on the CPU in float32 (so every device draws the same numbers).

    - gaussian: N(0, I), what most generators are trained on;
    - uniform: U(−√3, √3) per dimension, the same variance as the Gaussian (DCGAN's paper sampled uniformly);
    - spherical: a Gaussian rescaled to norm √d, where nearly all Gaussian mass lies in high dimension.
    """
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    if noise == "uniform":
        return (torch.rand(shape, generator=generator) * 2 - 1) * math.sqrt(3.0)
    z = torch.randn(shape, generator=generator)
    if noise == "spherical":
        z = z / z.norm().clamp_min(1e-12) * math.sqrt(z.numel())
    return z


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation from `a` (t=0, returned exactly) to `b` (t=1), treating each as one vector."""
    if t <= 0.0:
        return a.clone()
    if t >= 1.0:
        return b.clone()
    import torch

    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    theta = torch.arccos(cos.clamp(-1.0, 1.0))
    if theta.abs() < 1e-4:  # nearly parallel: the spherical weights lose precision, and a line is as good
        return lerp(a, b, t)
    mixed = (torch.sin((1 - t) * theta) * a64 + torch.sin(t * theta) * b64) / torch.sin(theta)
    return mixed.reshape(a.shape).to(a.dtype)


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    if t <= 0.0:
        return a.clone()
    if t >= 1.0:
        return b.clone()
    return a + (b - a) * t


def interpolation_path(keys: list[torch.Tensor], frames: int, *, loop: bool, spherical: bool = True
                       ) -> list[torch.Tensor]:
    """`frames` latents passing through every key in order: the first frame is `keys[0]` exactly.

    Without `loop` the last frame is `keys[-1]` exactly; with it the path runs on back to `keys[0]` and stops
    one step short of it, so the animation repeats without a doubled frame.
    """
    if len(keys) < 2:
        raise ValueError("an interpolation needs at least two keyframes")
    if frames < 2:
        raise ValueError(f"an interpolation needs at least 2 frames, got {frames}")
    stops = [*keys, keys[0]] if loop else keys
    segments = len(stops) - 1
    mix = slerp if spherical else lerp
    path = []
    for j in range(frames):
        position = j * segments / frames if loop else j * segments / (frames - 1)
        index = min(int(position), segments - 1)
        path.append(mix(stops[index], stops[index + 1], position - index))
    return path


def random_walk(start: torch.Tensor, frames: int, step: float, seed: int, noise: NoiseType = "gaussian"
                ) -> list[torch.Tensor]:
    """A walk of `frames` latents from `start` (the first frame, exactly).

    Each step mixes in fresh noise as z ← √(1−s²)·z + s·ε, which keeps a unit-variance latent at unit variance:
    the walk wanders through likely latents instead of drifting off to where the generator never looked.
    """
    path = [start.clone()]
    keep = math.sqrt(max(0.0, 1.0 - step * step))
    for j in range(1, frames):
        epsilon = sample_noise(tuple(start.shape), _derived_seed(seed, j), noise)
        path.append(keep * path[-1] + step * epsilon)
    return path


def variations(start: torch.Tensor, count: int, strength: float, seed: int, noise: NoiseType = "gaussian"
               ) -> list[torch.Tensor]:
    """`count` small perturbations of `start`, each one step of `random_walk` with its own noise."""
    keep = math.sqrt(max(0.0, 1.0 - strength * strength))
    return [keep * start + strength * sample_noise(tuple(start.shape), _derived_seed(seed, j + 1), noise)
            for j in range(count)]


def _derived_seed(seed: int, index: int) -> int:
    """A seed for the `index`-th extra draw of a job: distinct per index, and never the job's own seed."""
    return (seed * 1_000_003 + index * 7919) % (MAX_SEED + 1)
