"""The picture and mask an inpainting job paints: outpainting's larger canvas, A1111's mask blur and masked-content
fills. Plain PIL and numpy; the pipeline passes the results to diffusers' inpainting (whose `padding_mask_crop` is
A1111's "only masked" inpaint area) and lays the original back over everything the mask leaves alone.

- Outpainting (as A1111's outpainting scripts): the canvas grows by N px on each side; the new area is filled from
  the picture's edge (`edge`: its border pixels stretched outwards, `blur`: the same, blurred, `noise`: seeded
  noise around the picture's mean colour) and masked white, so it is painted and the picture itself is not.
- Masked content (A1111's `inpainting_fill`): `original` keeps the picture under the mask as the start, `fill`
  replaces it with a strong blur of the picture (its surroundings' colours), `latent noise` with seeded noise, and
  `latent nothing` with mid grey (which the VAE encodes near the zero latent).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from PIL import Image, ImageFilter

Fill = Literal["edge", "blur", "noise"]
MaskedContent = Literal["fill", "original", "latent noise", "latent nothing"]
FILL_BLUR = 32  # px of blur for the `blur` outpaint fill and the `fill` masked content: colours, no shapes


def outpaint_canvas(image: Image.Image, mask: Image.Image | None, sides: tuple[int, int, int, int], fill: Fill,
                    seed: int) -> tuple[Image.Image, Image.Image]:
    """(canvas, mask) for growing `image` by (left, right, up, down) px: the canvas filled as `fill` says, the mask
    white over the new area (and over `mask`, the user's own, where one is given)."""
    left, right, up, down = sides
    pixels = np.asarray(image.convert("RGB"))
    padding = ((up, down), (left, right), (0, 0))
    if fill == "noise":
        grown = np.pad(pixels, padding, mode="constant")
        new = np.pad(np.zeros(pixels.shape[:2], dtype=bool), padding[:2], mode="constant", constant_values=True)
        noise = _noise(grown.shape, pixels.reshape(-1, 3).mean(axis=0), seed)
        grown = np.where(new[..., None], noise, grown)
    else:
        grown = np.pad(pixels, padding, mode="edge")
    canvas = Image.fromarray(np.ascontiguousarray(grown.astype(np.uint8)))
    if fill == "blur":
        canvas.paste(canvas.filter(ImageFilter.GaussianBlur(FILL_BLUR)), (0, 0))
        canvas.paste(image.convert("RGB"), (left, up))
    grown_mask = Image.new("L", canvas.size, 255)
    grown_mask.paste(mask.convert("L") if mask is not None else Image.new("L", image.size, 0), (left, up))
    return canvas, grown_mask


def blurred(mask: Image.Image, radius: int) -> Image.Image:
    """The mask with soft edges (A1111's mask blur), so the painted area fades into the picture."""
    mask = mask.convert("L")
    return mask.filter(ImageFilter.GaussianBlur(radius)) if radius else mask


def prefilled(image: Image.Image, mask: Image.Image, content: MaskedContent, seed: int) -> Image.Image:
    """The picture the job starts from: `image` with what lies under the mask replaced as `content` says."""
    if content == "original":
        return image
    if content == "fill":
        under = image.filter(ImageFilter.GaussianBlur(FILL_BLUR))
    elif content == "latent noise":
        mean = np.asarray(image.convert("RGB")).reshape(-1, 3).mean(axis=0)
        under = Image.fromarray(_noise((image.height, image.width, 3), mean, seed).astype(np.uint8))
    else:
        under = Image.new("RGB", image.size, (128, 128, 128))
    return Image.composite(under, image.convert("RGB"), mask.convert("L"))


def _noise(shape: tuple[int, ...], mean: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(mean + rng.normal(0.0, 64.0, shape), 0, 255)
