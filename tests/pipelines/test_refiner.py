"""The SDXL refiner on tiny SDXL models: the base model hands its latents over at the switch and the refiner
finishes the schedule; with the base model itself as the refiner the picture is the base model's own."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.base import PipelineError
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.tiny_sd import save_tiny_sd
from tests.support.tiny_sdxl import save_tiny_sdxl

BASE = {"prompt": "a lighthouse at dusk", "width": 64, "height": 64, "num_steps": 5, "cfg_scale": 5.0}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextToImagePipeline, dict[str, str]]:
    root = tmp_path_factory.mktemp("models")
    base = save_tiny_sdxl(root / "tiny-sdxl")
    same = shutil.copytree(base, root / "same-refiner")
    other = shutil.copytree(base, root / "other-refiner")
    pipe = TextToImagePipeline.load(str(base), device="cpu")
    from diffusers import UNet2DConditionModel

    torch.manual_seed(1)  # a UNet of the same shape with other weights
    UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(other / "unet")).save_pretrained(other / "unet")
    return pipe, {"checkpoint:same": str(same), "checkpoint:other": str(other)}


def picture(pipe: TextToImagePipeline, files: dict[str, str], **params: object) -> np.ndarray:
    result = pipe(TextToImageParams.from_dict({**BASE, **params}), seed=7, files=files)
    assert result.images[0].size == (64, 64)
    return np.asarray(result.images[0], dtype=np.float64)


def test_the_refiner_finishes_what_the_base_model_began(models) -> None:
    pipe, files = models
    alone = picture(pipe, files)
    same = picture(pipe, files, refiner_checkpoint="same", refiner_switch_at=0.6)
    other = picture(pipe, files, refiner_checkpoint="other", refiner_switch_at=0.6)
    assert np.abs(same - alone).mean() < 2  # one trajectory, split in two calls
    assert np.abs(other - alone).mean() > np.abs(same - alone).mean() + 1  # the refiner's own weights show
    later = picture(pipe, files, refiner_checkpoint="other", refiner_switch_at=0.99)
    assert np.abs(later - alone).mean() < np.abs(other - alone).mean()  # less left to the refiner, less of it
    fields = TextToImageParams.from_dict({**BASE, "refiner_checkpoint": "other"}).a1111_fields()
    assert fields["Refiner"] == "other" and fields["Refiner switch at"] == 0.8


def test_refiner_settings_that_cannot_work_are_refused(tmp_path: Path) -> None:
    for change, words in (({"refiner_switch_at": 0.1, "num_steps": 5}, "no step before the refiner"),
                          ({"enable_hr": True}, "without hires fix"), ({"refiner_switch_at": 1.0}, "at most 0.99")):
        with pytest.raises(ValueError, match=words):
            TextToImageParams.from_dict({**BASE, "refiner_checkpoint": "other", **change})
    assert TextToImageParams.from_dict({**BASE, "refiner_checkpoint": "xl-refiner"}).model_files() == [
        ("checkpoint", "xl-refiner")]
    sd_folder = save_tiny_sd(tmp_path / "tiny-sd")
    sd = TextToImagePipeline.load(str(sd_folder), device="cpu")
    with pytest.raises(PipelineError, match="not SDXL"):
        sd(TextToImageParams.from_dict({**BASE, "refiner_checkpoint": "x"}), seed=1, files={"checkpoint:x": "y"})


def test_a_refiner_that_is_not_sdxl_fails_its_job_by_name(models, tmp_path: Path) -> None:
    pipe, files = models
    sd_folder = save_tiny_sd(tmp_path / "tiny-sd")
    with pytest.raises(PipelineError, match="the refiner tiny-sd is not an SDXL model"):
        pipe(TextToImageParams.from_dict({**BASE, "refiner_checkpoint": "sd"}), seed=1,
             files={**files, "checkpoint:sd": str(sd_folder)})
    assert picture(pipe, files, refiner_checkpoint="same").shape == (64, 64, 3)  # the next job runs
