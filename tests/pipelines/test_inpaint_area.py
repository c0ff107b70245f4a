"""Outpainting, only-masked inpainting, mask blur and masked content on the tiny SD model: the painted area changes,
and everything the (blurred) mask leaves alone is the source's exact pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from pipelines.inpaint_area import blurred, outpaint_canvas, prefilled
from pipelines.text_to_image import TextToImageParams, TextToImagePipeline
from tests.support.photos import photo
from tests.support.tiny_sd import save_tiny_sd

BASE = {"prompt": "a tabby cat", "num_steps": 4, "strength": 0.9, "init_image": "src"}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> TextToImagePipeline:
    return TextToImagePipeline.load(str(save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")), device="cpu")


@pytest.fixture(scope="module")
def source() -> Image.Image:
    return photo("chelsea").convert("RGB").resize((96, 64))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_outpainting_grows_the_canvas_and_keeps_the_picture(pipe: TextToImagePipeline, source: Image.Image) -> None:
    params = TextToImageParams.from_dict({**BASE, "outpaint_right": 32, "outpaint_up": 16, "mask_blur": 0})
    assert params.mode == "inpaint" and params.a1111_fields()["Outpaint"] == "right 32, up 16"
    result = pipe(params, seed=2, inputs={"src": source})
    out = pixels(result.images[0])
    assert out.shape == (80, 128, 3) and result.info["size"] == "128x80"
    assert np.array_equal(out[16:, :96], pixels(source))  # the picture itself, untouched
    assert np.abs(out[:, 96:].astype(float) - out[16:, 95:96].mean()).mean() > 1  # the new area was painted


@pytest.mark.parametrize("fill", ["edge", "blur", "noise"])
def test_each_outpaint_fill_starts_the_new_area_from_the_picture(source: Image.Image, fill: str) -> None:
    canvas, mask = outpaint_canvas(source, None, (8, 0, 0, 16), fill, seed=1)
    assert canvas.size == (104, 80) and np.array_equal(pixels(canvas)[:64, 8:], pixels(source))
    assert np.asarray(mask)[:64, 8:].max() == 0 and np.asarray(mask)[64:].min() == 255
    if fill == "edge":
        assert np.array_equal(pixels(canvas)[70, 8:], pixels(source)[63])  # the bottom row stretched down


def test_only_masked_paints_the_masked_area_at_the_jobs_size_and_keeps_the_rest(pipe: TextToImagePipeline,
                                                                                 source: Image.Image) -> None:
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (40, 20, 56, 36))
    inputs = {"src": source, "m": mask}
    params = {**BASE, "mask": "m", "inpaint_full_res": True, "inpaint_full_res_padding": 8, "width": 64,
              "height": 64, "mask_blur": 2}
    result = pipe(TextToImageParams.from_dict(params), seed=3, inputs=inputs)
    out = pixels(result.images[0])
    assert out.shape == (64, 96, 3)  # the whole picture at its own size, not the job's 64×64
    touched = np.asarray(blurred(mask, 2)) > 0
    assert np.array_equal(out[~touched], pixels(source)[~touched])
    assert np.abs(out[24:32, 44:52] - pixels(source)[24:32, 44:52]).mean() > 1
    fields = TextToImageParams.from_dict(params).a1111_fields()
    assert fields["Inpaint area"] == "Only masked" and fields["Masked area padding"] == 8 and fields["Mask blur"] == 2


@pytest.mark.parametrize("content", ["fill", "latent noise", "latent nothing"])
def test_masked_content_replaces_only_what_lies_under_the_mask(source: Image.Image, content: str) -> None:
    mask = Image.new("L", source.size, 0)
    mask.paste(255, (0, 0, 48, 64))
    start = pixels(prefilled(source, mask, content, seed=0))  # type: ignore[arg-type]
    assert np.array_equal(start[:, 48:], pixels(source)[:, 48:])
    assert np.abs(start[:, :48] - pixels(source)[:, :48]).mean() > 5
    assert prefilled(source, mask, "original", seed=0) is source
    smooth = pixels(source.filter(ImageFilter.GaussianBlur(32)))
    if content == "fill":
        assert np.abs(start[:, :40] - smooth[:, :40]).max() <= 1


@pytest.mark.parametrize(("change", "words"), [
    ({"outpaint_left": 12}, "`outpaint_left` must be a multiple of 8"),
    ({"outpaint_down": 1032}, "`outpaint_down` must be at most 1024"),
    ({"init_image": "", "outpaint_up": 8}, "outpainting needs an `init_image`"),
])
def test_bad_outpainting_is_refused_by_name(change: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        TextToImageParams.from_dict({**BASE, **change})


def test_a_canvas_past_the_pixel_limit_is_refused_before_the_job_runs() -> None:
    params = TextToImageParams.from_dict({**BASE, "outpaint_right": 1024, "outpaint_down": 1024})
    assert params.workload_for({"src": (512, 512)}).pixels == 1536 * 1536
    with pytest.raises(ValueError, match=r"3072x3072 canvas; at most 4,194,304 pixels"):
        params.workload_for({"src": (2048, 2048)})
