"""Conversions every pipeline needs: PIL images ↔ tensors, the job's input images by reference, grids."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from pipelines.base import ImageInputs, PipelineError

# torch is imported by the two tensor conversions only: the pipeline modules import this one at their top, and the
# studio's server imports them (for their params) without loading torch.
if TYPE_CHECKING:
    import torch


def input_image(inputs: ImageInputs, ref: str, name: str) -> Image.Image:
    """The input image a param (named `name`) refers to; the studio sends every one a job's params name."""
    try:
        return inputs[ref]
    except KeyError:
        raise PipelineError(f"`{name}` image {ref!r} was not sent with the job") from None


def to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB image → (1, 3, H, W) float32 in [0, 1]."""
    import torch

    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] → RGB image (values outside are clipped)."""
    import torch

    chw = tensor[0] if tensor.dim() == 4 else tensor
    array = (chw.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))


def contact_sheet(images: list[Image.Image], *, columns: int | None = None, gap: int = 2,
                  background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Images of one size in a near-square grid (row by row), `gap` pixels apart: a grid or a frame sheet."""
    if not images:
        raise ValueError("a contact sheet needs at least one image")
    width, height = images[0].size
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    sheet = Image.new("RGB", (columns * width + (columns - 1) * gap, rows * height + (rows - 1) * gap), background)
    for i, image in enumerate(images):
        row, column = divmod(i, columns)
        sheet.paste(image.convert("RGB"), (column * (width + gap), row * (height + gap)))
    return sheet


def upscale(image: Image.Image, factor: int) -> Image.Image:
    """A Lanczos resample to `factor`× the size, for viewing small outputs: smoother, but no new detail."""
    if factor == 1:
        return image
    return image.resize((image.width * factor, image.height * factor), Image.Resampling.LANCZOS)


def frame_sheet(frames: list[Image.Image], *, max_pixels: int = 16_000_000) -> Image.Image:
    """Every frame of an animation on one sheet; frames are shrunk (never dropped) to keep it under `max_pixels`."""
    width, height = frames[0].size
    scale = min(1.0, math.sqrt(max_pixels / (len(frames) * width * height)))
    if scale < 1.0:
        size = (max(1, int(width * scale)), max(1, int(height * scale)))
        frames = [frame.resize(size, Image.Resampling.LANCZOS) for frame in frames]
    return contact_sheet(frames)


def rgb(image: Image.Image) -> Image.Image:
    """Any mode (palette, alpha, 16-bit, CMYK, grey) → RGB; transparency is flattened onto white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((array / max(array.max(), 1) * 255).round().astype(np.uint8), mode="L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")
