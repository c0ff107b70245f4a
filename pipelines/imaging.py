"""Conversions every pipeline needs: PIL images ↔ tensors, and the job's input images by reference."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from pipelines.base import ImageInputs, PipelineError


def input_image(inputs: ImageInputs, ref: str, name: str) -> Image.Image:
    """The input image a param (named `name`) refers to; the studio sends every one a job's params name."""
    try:
        return inputs[ref]
    except KeyError:
        raise PipelineError(f"`{name}` image {ref!r} was not sent with the job") from None


def to_tensor(image: Image.Image, device: torch.device | str = "cpu") -> torch.Tensor:
    """RGB image → (1, 3, H, W) float32 in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0  # (H, W, 3)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous().to(device)


def to_image(tensor: torch.Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) in [0, 1] → RGB image (values outside are clipped)."""
    chw = tensor[0] if tensor.dim() == 4 else tensor
    array = (chw.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array))
