"""LoRAs on the tiny SD model: a kohya-format file changes the picture by its weight, several combine, the text
encoder and UNet weights are apart, and nothing of a job's LoRAs is left for the next job."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from pipelines.base import PipelineError
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.tiny_sd import save_tiny_lora, save_tiny_sd

BASE = {"prompt": "a cat", "width": 64, "height": 64, "num_steps": 3, "sampler": "Euler"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[TextToImagePipeline, dict[str, str]]:
    root = tmp_path_factory.mktemp("models")
    pipe = TextToImagePipeline.load(str(save_tiny_sd(root / "tiny-sd")), device="cpu")
    files = {f"lora:{name}": str(save_tiny_lora(root / f"{name}.safetensors", pipe.pipe, seed=seed))
             for name, seed in (("ink", 1), ("paper", 2))}
    unet_only = {k: v for k, v in load_file(files["lora:ink"]).items() if k.startswith("lora_unet")}
    save_file(unet_only, str(root / "unet_only.safetensors"))  # many LoRAs train the UNet alone
    files["lora:unet_only"] = str(root / "unet_only.safetensors")
    (root / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}            ")
    files["lora:broken"] = str(root / "broken.safetensors")
    return pipe, files


def picture(tiny, prompt: str) -> np.ndarray:
    pipe, files = tiny
    result = pipe(TextToImageParams.from_dict({**BASE, "prompt": prompt}), seed=1, files=files)
    return np.asarray(result.images[0], dtype=np.int16)


def test_a_lora_changes_the_picture_by_its_weight_and_leaves_nothing_behind(tiny) -> None:
    base = picture(tiny, "a cat")
    assert np.array_equal(picture(tiny, "a cat <lora:ink:0>"), base)  # weight 0: the base picture exactly
    full, half = picture(tiny, "a cat <lora:ink:1>"), picture(tiny, "a cat <lora:ink:0.5>")
    assert np.abs(full - base).mean() > np.abs(half - base).mean() > 0.5
    assert np.array_equal(picture(tiny, "a cat"), base)  # switched off after its job
    assert np.array_equal(picture(tiny, "a <lora:ink:1> cat"), full)  # the tag is not read as words


def test_two_loras_combine_and_the_encoder_and_unet_weights_are_apart(tiny) -> None:
    ink, paper = picture(tiny, "a cat <lora:ink:1>"), picture(tiny, "a cat <lora:paper:1>")
    both = picture(tiny, "a cat <lora:ink:1> <lora:paper:1>")
    assert not np.array_equal(both, ink) and not np.array_equal(both, paper)
    encoder_only, unet_only = picture(tiny, "a cat <lora:ink:1:0>"), picture(tiny, "a cat <lora:ink:te=0:unet=1>")
    assert not np.array_equal(encoder_only, unet_only) and not np.array_equal(encoder_only, ink)


def test_a_lora_of_the_unet_alone_loads_beside_a_whole_one(tiny) -> None:
    base, alone = picture(tiny, "a cat"), picture(tiny, "a cat <lora:unet_only:1>")
    assert np.abs(alone - base).mean() > 0.5
    assert not np.array_equal(picture(tiny, "a cat <lora:unet_only:1> <lora:paper:1>"), alone)


def test_a_broken_lora_fails_its_job_by_name_and_the_next_job_runs(tiny) -> None:
    with pytest.raises(PipelineError, match="cannot load the LoRA broken.safetensors"):
        picture(tiny, "a cat <lora:broken:1>")
    with pytest.raises(PipelineError, match="the LoRA 'nowhere' was not sent with the job"):
        picture(tiny, "a cat <lora:nowhere:1>")
    assert np.array_equal(picture(tiny, "a cat <lora:ink:0>"), picture(tiny, "a cat"))
