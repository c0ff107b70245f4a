"""Hires fix on the tiny SD model: the second pass makes pictures at the larger size from the first pass's, each
picture from its own seed, with the latent modes and with a picture upscaler; bad settings are refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.tiny_sd import save_tiny_sd

BASE = {"prompt": "a lighthouse", "width": 64, "height": 64, "num_steps": 4, "strength": 0.5}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> TextToImagePipeline:
    return TextToImagePipeline.load(str(save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")), device="cpu")


def run(pipe: TextToImagePipeline, seed: int = 3, **params: object) -> tuple[list[np.ndarray], dict]:
    result = pipe(TextToImageParams.from_dict({**BASE, **params}), seed=seed)
    return [np.asarray(image, dtype=np.float64) for image in result.images], result.info


@pytest.mark.parametrize("upscaler", ["Latent", "Latent (bicubic antialiased)", "Latent (nearest-exact)", "Lanczos",
                                      "None"])
def test_the_second_pass_paints_at_the_larger_size(pipe: TextToImagePipeline, upscaler: str) -> None:
    steps: list[tuple[int, int]] = []
    result = pipe(TextToImageParams.from_dict({**BASE, "enable_hr": True, "hr_upscaler": upscaler}), seed=3,
                  on_step=lambda done, total, _: steps.append((done, total)))
    assert [image.size for image in result.images] == [(128, 128)]
    assert result.info["size"] == "128x128" and result.info["first_pass_size"] == "64x64"
    # 4 first-pass steps, then 0.5 × 4 = 2 img2img steps, counted as one job
    assert steps[-1] == (6, 6) and [done for done, _ in steps] == sorted(done for done, _ in steps)
    first, _ = run(pipe)
    enlarged = np.asarray(result.images[0].resize((64, 64)), dtype=np.float64)
    assert np.abs(enlarged - first[0]).mean() < 40  # the second pass starts from the first picture, not from noise


def test_each_picture_is_its_own_seeds_and_the_size_and_steps_follow_the_fields(pipe: TextToImagePipeline) -> None:
    hires = {"enable_hr": True, "hr_resize_x": 96, "hr_resize_y": 0, "hr_second_pass_steps": 6}
    pair, info = run(pipe, seed=10, batch_size=2, **hires)
    alone, _ = run(pipe, seed=11, **hires)
    assert [p.shape for p in pair] == [(96, 96, 3)] * 2 and info["size"] == "96x96"
    assert np.abs(pair[1] - alone[0]).max() <= 2  # picture 1 of a batch is seed + 1's, to within rounding
    assert np.abs(pair[0] - pair[1]).mean() > 1
    fields = TextToImageParams.from_dict({**BASE, **hires, "hr_upscaler": "Lanczos"}).a1111_fields()
    assert fields["Hires resize"] == "96x0" and fields["Hires steps"] == 6 and fields["Hires upscaler"] == "Lanczos"
    assert fields["Denoising strength"] == 0.5 and "Hires upscale" not in fields
    assert TextToImageParams.from_dict({**BASE, "enable_hr": True}).a1111_fields()["Hires upscale"] == 2.0


@pytest.mark.parametrize(("change", "words"), [
    ({"strength": 0.1}, "at least one step"),
    ({"hr_second_pass_steps": 1, "strength": 0.5}, "at least one step"),
    ({"hr_scale": 0}, "`hr_scale` must be at least 1"),
    ({"hr_scale": float("nan")}, "finite"),
    ({"hr_scale": 5}, "`hr_scale` must be at most 4"),
    ({"width": 2048, "height": 2048, "hr_scale": 2.5}, "at most 4096 px a side"),
    ({"hr_sampler": "Euler b"}, "`hr_sampler` must be empty"),
    ({"hr_resize_x": 100}, "multiple of 8"),
    ({"init_image": "abc"}, "applies to text to image"),
])
def test_bad_hires_settings_are_refused_by_name(change: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        TextToImageParams.from_dict({**BASE, "enable_hr": True, **change})


def test_a_library_upscaler_is_named_in_the_jobs_files_and_the_builtins_are_not() -> None:
    assert TextToImageParams.from_dict({**BASE, "enable_hr": True, "hr_upscaler": "4x-ultra"}).model_files() == [
        ("upscaler", "4x-ultra")]
    for name in ("Latent", "Lanczos", "R-ESRGAN 4x+"):
        assert TextToImageParams.from_dict({**BASE, "enable_hr": True, "hr_upscaler": name}).model_files() == []
    assert TextToImageParams.from_dict({**BASE, "enable_hr": True}).batch_key() is None
