"""bfloat16, the fast CPU path on CPUs with AMX: the bundled models run in it and their pictures stay those of
float32 (PSNR ≥ 30 dB for the same seed). Runs everywhere; where the CPU lacks bf16 hardware it is emulated, slower."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.catalog import Catalog
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from pipelines.vae import VaeParams, VaePipeline

pytestmark = pytest.mark.slow


def psnr(a, b) -> float:
    mse = np.mean((np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize(("kind", "pipeline", "params"), [
    ("text_to_image", TextToImagePipeline, TextToImageParams.from_dict({"prompt": "a red heart", "num_steps": 4})),
    ("vae", VaePipeline, VaeParams.from_dict({"mode": "sample", "num_images": 1})),
])
def test_the_bundled_models_in_bf16_match_float32(kind: str, pipeline, params) -> None:
    entry = Catalog().default_model(kind)
    assert entry is not None and entry.origin == "bundled"
    pictures = {dtype: pipeline.load(entry.source, device="cpu", dtype=dtype, **entry.load_options)(params, seed=5)
                for dtype in ("fp32", "bf16")}
    for full, half in zip(pictures["fp32"].images, pictures["bf16"].images, strict=True):
        assert psnr(full, half) >= 30, f"{entry.id}: bf16 drifted from fp32"
