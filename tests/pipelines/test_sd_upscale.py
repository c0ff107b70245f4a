"""Tiled SD upscale on the tiny SD model: the enlarged picture is repainted tile by tile and the tiles meet without
a seam; bad settings are refused by name and the result's size is known before the job runs."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.sd_upscale import _feather, _starts
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.photos import photo
from tests.support.tiny_sd import save_tiny_sd

BASE = {"prompt": "a tabby cat", "num_steps": 4, "strength": 0.3, "init_image": "src", "sd_upscale": True,
        "width": 64, "height": 64, "sd_upscale_overlap": 16}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> TextToImagePipeline:
    return TextToImagePipeline.load(str(save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")), device="cpu")


def test_the_picture_is_repainted_in_tiles_that_meet_without_a_seam(pipe: TextToImagePipeline) -> None:
    source = photo("chelsea").convert("RGB").resize((72, 48))
    steps: list[tuple[int, int]] = []
    result = pipe(TextToImageParams.from_dict(BASE), seed=4, inputs={"src": source},
                  on_step=lambda done, total, _: steps.append((done, total)))
    out = np.asarray(result.images[0], dtype=np.float64)
    assert out.shape == (96, 144, 3) and result.info["tiles"] == 6 and result.info["size"] == "144x96"
    assert steps[-1][0] == steps[-1][1]  # progress over every tile
    enlarged = np.asarray(source.resize((144, 96)), dtype=np.float64)
    assert np.abs(out - enlarged).mean() > 1  # repainted, not only enlarged
    columns = np.abs(np.diff(out, axis=1)).mean(axis=(0, 2))  # the step between neighbouring columns
    cuts = [left + 64 for left in _starts(144, 64, 16)[:-1]]  # where a tile without feathering would end
    assert max(columns[c - 1] for c in cuts) < 3 * np.median(columns)


def test_tiles_cover_the_picture_and_their_weights_fade_only_where_they_overlap() -> None:
    assert _starts(144, 64, 16) == [0, 40, 80] and _starts(64, 64, 16) == [0] and _starts(200, 64, 0) == [0, 45, 91,
                                                                                                           136]
    weight = _feather((40, 0, 104, 64), (144, 64), 16)[..., 0]
    assert weight[:, 20:44].min() == 1.0 and weight[:, 0].max() < 0.05 and weight[:, -1].max() < 0.05
    assert weight[0, 30] == 1.0  # the picture's own top edge does not fade


@pytest.mark.parametrize(("change", "words"), [
    ({"init_image": "", "mask": ""}, "repaints an `init_image`"),
    ({"outpaint_left": 8}, "without a mask or outpainting"),
    ({"batch_size": 2}, "makes one picture"),
    ({"sd_upscale_overlap": 64}, "must be smaller than a tile"),
    ({"sd_upscale_scale": 5}, "`sd_upscale_scale` must be at most 4"),
])
def test_bad_sd_upscale_settings_are_refused_by_name(change: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        TextToImageParams.from_dict({**BASE, **change})


def test_the_result_size_is_checked_before_the_job_runs() -> None:
    params = TextToImageParams.from_dict(BASE)
    assert params.workload_for({"src": (512, 256)}).pixels == 1024 * 512
    with pytest.raises(ValueError, match="12288x12288 picture; at most 8192"):
        TextToImageParams.from_dict({**BASE, "sd_upscale_scale": 3}).workload_for({"src": (4096, 4096)})
    assert params.a1111_fields()["SD upscale overlap"] == 16
    assert TextToImageParams.from_dict({**BASE, "sd_upscale_upscaler": "4x-ultra"}).model_files() == [
        ("upscaler", "4x-ultra")]
