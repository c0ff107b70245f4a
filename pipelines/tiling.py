"""Seamless tiling (A1111's "Tiling"): every convolution of the UNet and the VAE pads circularly, so the picture
wraps around at its edges and repeats without a seam; switched back after the job."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def seamless(*modules: Any) -> Iterator[int]:
    """Circular padding in each padded Conv2d of `modules` for the duration; yields how many were switched."""
    import torch

    switched = []
    for module in modules:
        for conv in module.modules():
            if isinstance(conv, torch.nn.Conv2d) and conv.padding_mode == "zeros" and any(
                    p > 0 for p in (conv.padding if isinstance(conv.padding, tuple) else ())):
                conv.padding_mode = "circular"
                switched.append(conv)
    try:
        yield len(switched)
    finally:
        for conv in switched:
            conv.padding_mode = "zeros"
