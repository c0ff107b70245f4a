"""Style transfer on the example photos: the three modes, colour preservation, odd inputs, bad params."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines.base import Interrupted
from pipelines.style_transfer import StyleTransferParams, StyleTransferPipeline
from tests.support.photos import photo

INPUTS = {"in-cat": photo("chelsea"), "in-astro": photo("astronaut"), "in-red": Image.new("RGB", (40, 40), "red")}


@pytest.fixture(scope="module")
def pipe(tmp_path_factory: pytest.TempPathFactory) -> StyleTransferPipeline:
    loaded = StyleTransferPipeline.load("style-transfer", device="cpu")
    loaded.cache_dir = tmp_path_factory.mktemp("cache")  # converted weights land here, not in the user's cache
    return loaded


def run(pipe: StyleTransferPipeline, **params: object):
    values = {"content_image": "in-cat", "size": 96, **params}
    return pipe(StyleTransferParams.from_dict(values), seed=0, inputs=INPUTS)


def arr(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_builtin_styles_keep_the_aspect_and_blend(pipe: StyleTransferPipeline) -> None:
    one, two = run(pipe, style=1), run(pipe, style=7)
    assert one.images[0].size == (96, 64)  # chelsea is 451×300
    assert (arr(run(pipe, style=1).images[0]) == arr(one.images[0])).all()
    blend = arr(run(pipe, style=1, style_b=7, blend=0.5).images[0])
    assert not (blend == arr(one.images[0])).all() and not (blend == arr(two.images[0])).all()


def test_any_painting_with_strength_and_a_second_painting(pipe: StyleTransferPipeline) -> None:
    full = arr(run(pipe, mode="painting", style_image="in-astro").images[0])
    half = arr(run(pipe, mode="painting", style_image="in-astro", strength=0.5).images[0])
    mixed = arr(run(pipe, mode="painting", style_image="in-astro", style_image_2="in-red", style_mix=0.5).images[0])
    assert full.shape == (64, 96, 3)
    assert not (full == half).all() and not (full == mixed).all()


def test_gatys_runs_and_stop_keeps_the_best_when_asked(pipe: StyleTransferPipeline) -> None:
    result = run(pipe, mode="gatys", style_image="in-astro", size=48, iterations=2)
    assert result.images[0].size == (48, 32) and result.info["mode"] == "gatys"
    params = StyleTransferParams.from_dict({"content_image": "in-cat", "mode": "gatys", "style_image": "in-astro",
                                            "size": 48, "iterations": 50})
    with pytest.raises(Interrupted):
        pipe(params, seed=0, inputs=INPUTS, should_stop=lambda: True)
    kept = pipe(StyleTransferParams.from_dict({**params.to_dict(), "keep_partial": True}), seed=0, inputs=INPUTS,
                should_stop=lambda: True)
    assert kept.info["partial"] is True and kept.images[0].size == (48, 32)


def test_preserving_the_photos_colours(pipe: StyleTransferPipeline) -> None:
    styled = run(pipe, style=3).images[0]
    cat = photo("chelsea").resize(styled.size, Image.Resampling.LANCZOS)
    luminance = run(pipe, style=3, preserve_colors="luminance").images[0]
    _, cb, cr = luminance.convert("YCbCr").split()
    _, cat_cb, cat_cr = cat.convert("YCbCr").split()
    assert np.abs(arr(cb) - arr(cat_cb)).mean() < 2 and np.abs(arr(cr) - arr(cat_cr)).mean() < 2
    matched = arr(run(pipe, style=3, preserve_colors="histogram").images[0])
    assert np.abs(matched.mean(axis=(0, 1)) - arr(cat).mean(axis=(0, 1))).max() < 4


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "CMYK", "I;16", "1x1"])
def test_odd_photos_are_converted(pipe: StyleTransferPipeline, mode: str) -> None:
    if mode == "1x1":
        image = Image.new("RGB", (1, 1), "blue")
    elif mode == "I;16":
        image = Image.new("I;16", (30, 20), 30_000)
    else:
        image = photo("chelsea", 40).convert(mode)
    result = pipe(StyleTransferParams.from_dict({"content_image": "in-odd", "size": 32}), seed=0,
                  inputs={"in-odd": image})
    assert result.images[0].mode == "RGB" and max(result.images[0].size) in (16, 32)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "`content_image` is required"),
        ({"content_image": "in-cat", "mode": "painting"}, "`style_image` is required in painting mode"),
        ({"content_image": "in-cat", "mode": "gatys"}, "`style_image` is required in gatys mode"),
        ({"content_image": "in-cat", "style": 27}, "`style` must be at most 26, got 27"),
        ({"content_image": "in-cat", "style": 4, "style_b": 4}, "`style_b` is the same style as `style` (4)"),
        ({"content_image": "in-cat", "mode": "sketch"}, "`mode` must be one of"),
    ],
)
def test_bad_params_are_named(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        StyleTransferParams.from_dict(params)


def test_torch_compile_is_an_opt_in_load_option() -> None:
    import torch

    plain = StyleTransferPipeline.load("style-transfer", device="cpu")
    fast = StyleTransferPipeline.load("style-transfer", device="cpu", torch_compile=True)
    net = torch.nn.Conv2d(3, 3, 1)
    assert plain._compiled(net) is net
    assert isinstance(fast._compiled(net), torch._dynamo.eval_frame.OptimizedModule)  # compiled on first call


def test_memory_of_the_loaded_networks_is_counted(pipe: StyleTransferPipeline) -> None:
    run(pipe, mode="painting", style_image="in-astro", size=32)
    assert pipe.nbytes() > 1_000_000  # the predictor alone holds ~2.5 M parameters
