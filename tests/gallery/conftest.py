"""Shared fixtures for the gallery tests: a recipe factory, a store in a temp dir, and a noise image."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from studio.gallery import GalleryStore, Recipe

T0 = 1_718_000_000.0  # 2024-06-10 UTC


def make_recipe(**overrides: Any) -> Recipe:
    values: dict[str, Any] = {
        "pipeline": "text_to_image",
        "model": "sd-turbo",
        "model_hash": None,
        "params": {"prompt": "a red fox", "negative_prompt": "blurry", "num_steps": 20},
        "seed": 42,
        "owner": "local",
        "job_id": "job1",
        "index": 0,
        "count": 1,
        "app_version": "0.1.0",
        "a1111": {"Steps": 20, "Sampler": "Euler a", "CFG scale": 7, "Size": "512x512"},
        "info": {},
        "created_at": T0,
    }
    values.update(overrides)
    return Recipe(**values)


def noise(width: int = 64, height: int = 48, mode: str = "RGB", seed: int = 0) -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    data = np.random.default_rng(seed).integers(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(data[..., 0] if channels == 1 else data)  # mode follows the channel count


@pytest.fixture
def recipe() -> Callable[..., Recipe]:
    return make_recipe


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GalleryStore]:
    gallery = GalleryStore(tmp_path / "gallery")
    yield gallery
    gallery.close()
