"""The Upscale pipeline: sizes by a factor or to a box, a network run as many times as the factor needs, a second
upscaler blended, and the params' refusals."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.base import Interrupted
from pipelines.models import Library
from pipelines.upscale import UpscaleParams, UpscalePipeline, enlarge
from tests.support.photos import photo

SOURCE = "ref-1"


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return photo("chelsea").convert("RGB").resize((40, 30))


def upscale(pipe: UpscalePipeline, picture: Image.Image, **params: object) -> Image.Image:
    result = pipe(UpscaleParams.from_dict({"image": SOURCE, **params}), seed=0, inputs={SOURCE: picture})
    return result.images[0]


def test_the_resamplers_and_the_bundled_networks_are_listed() -> None:
    ids = [m.id for m in UpscalePipeline.list_models(Library([]))]
    assert {"R-ESRGAN 4x+", "R-ESRGAN 4x+ Anime6B", "R-ESRGAN AnimeVideo", "Lanczos", "Nearest"} <= set(ids)
    assert ids.index("R-ESRGAN 4x+") < ids.index("Lanczos")


@pytest.mark.parametrize(("params", "size"), [
    ({"upscaling_resize": 2}, (80, 60)),
    ({"upscaling_resize": 2.5}, (100, 75)),
    ({"mode": "scale_to", "upscaling_resize_w": 64, "upscaling_resize_h": 64}, (64, 64)),  # filled and cropped
    ({"mode": "scale_to", "upscaling_resize_w": 64, "upscaling_resize_h": 64, "upscaling_crop": False}, (85, 64)),
])
def test_a_resampler_makes_the_asked_size(picture: Image.Image, params: dict, size: tuple[int, int]) -> None:
    pipe = UpscalePipeline.load("builtin:Lanczos", device="cpu")
    assert upscale(pipe, picture, **params).size == size


def test_a_x2_network_runs_twice_for_x4_and_a_second_upscaler_blends_in(picture: Image.Image) -> None:
    pipe = UpscalePipeline.load("bundled:R-ESRGAN AnimeVideo 2x", device="cpu")
    tiles: list[tuple[int, int]] = []
    double = upscale(pipe, picture, upscaling_resize=2)
    quad = pipe(UpscaleParams.from_dict({"image": SOURCE, "upscaling_resize": 4}), seed=0, inputs={SOURCE: picture},
                on_step=lambda done, total, _: tiles.append((done, total))).images[0]
    assert double.size == (80, 60) and quad.size == (160, 120) and tiles[-1][0] == tiles[-1][1]
    again = np.asarray(enlarge(double, (160, 120), pipe.net), dtype=np.float64)  # ×4 is ×2 twice
    assert np.abs(np.asarray(quad, dtype=np.float64) - again).max() <= 1
    nearest = np.asarray(picture.resize((80, 60), Image.Resampling.NEAREST), dtype=np.float64)
    half = np.asarray(upscale(pipe, picture, upscaling_resize=2, upscaler_2="Nearest",
                              extras_upscaler_2_visibility=0.5), dtype=np.float64)
    assert np.abs(half - (np.asarray(double, dtype=np.float64) + nearest) / 2).max() <= 1
    lanczos = np.asarray(picture.resize((80, 60), Image.Resampling.LANCZOS), dtype=np.float64)
    assert np.abs(np.asarray(double, dtype=np.float64) - lanczos).mean() > 1  # the network is no resample


def test_stop_between_tiles_ends_the_job(picture: Image.Image) -> None:
    pipe = UpscalePipeline.load("bundled:R-ESRGAN AnimeVideo 2x", device="cpu")
    with pytest.raises(Interrupted):
        pipe(UpscaleParams.from_dict({"image": SOURCE, "upscaling_resize": 2}), seed=0,
             inputs={SOURCE: picture.resize((400, 300))}, should_stop=lambda: True)


@pytest.mark.parametrize(("params", "words"), [
    ({"upscaling_resize": 0}, "`upscaling_resize` must be at least 1"),
    ({"upscaling_resize": 17}, "`upscaling_resize` must be at most 16"),
    ({"upscaling_resize": float("nan")}, "finite"),
    ({"image": ""}, "`image` is required"),
    ({"extras_upscaler_2_visibility": 0.5}, "`upscaler_2` is None"),
    ({"mode": "scale_to", "upscaling_resize_w": 0}, "`upscaling_resize_w` must be at least 16"),
])
def test_bad_params_are_refused_by_name(params: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        UpscaleParams.from_dict({"image": SOURCE, **params})


def test_the_result_size_is_known_before_the_job_runs() -> None:
    params = UpscaleParams.from_dict({"image": SOURCE, "upscaling_resize": 4})
    assert params.workload_for({SOURCE: (512, 256)}).pixels == 2048 * 1024
    with pytest.raises(ValueError, match=r"would be 20480×20480 px; at most 16384"):
        UpscaleParams.from_dict({"image": SOURCE, "upscaling_resize": 10}).workload_for({SOURCE: (2048, 2048)})
    assert params.model_files() == []
    assert UpscaleParams.from_dict({"image": SOURCE, "upscaler_2": "4x-ultra"}).model_files() == [
        ("upscaler", "4x-ultra")]
    fields = UpscaleParams.from_dict({"image": SOURCE, "upscaling_resize": 2, "source_artwork": "j-0"}).a1111_fields()
    assert fields == {"Postprocess upscale by": 2.0, "Source artwork": "j-0"}
