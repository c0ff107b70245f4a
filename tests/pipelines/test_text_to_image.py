"""Text-to-image on a tiny random SD 1.x model, offline: sources, samplers, modes, seeds, stop, bad input."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.base import Interrupted, PipelineError
from pipelines.diffusion_utils import SAMPLERS
from pipelines.models import ModelError
from pipelines.text_to_image import Sampler, TextToImageParams, TextToImagePipeline, native_shape
from tests.support.tiny_sd import install_in_hub_cache, save_tiny_sd

BASE = {"prompt": "a red apple on a table", "width": 64, "height": 64, "num_steps": 3}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="module")
def pipe(tiny_folder: Path) -> TextToImagePipeline:
    return TextToImagePipeline.load(str(tiny_folder), device="cpu")


def run(pipe: TextToImagePipeline, seed: int = 1, inputs=None, **params: object):
    return pipe(TextToImageParams.from_dict({**BASE, **params}), seed=seed, inputs=inputs)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_same_seed_same_pixels_and_each_batch_image_reproducible_alone(pipe: TextToImagePipeline) -> None:
    batch = run(pipe, seed=10, batch_size=2, batch_count=2)
    assert batch.seeds == [10, 11, 12, 13] and all(i.size == (64, 64) for i in batch.images)
    again = run(pipe, seed=10, batch_size=2, batch_count=2)
    assert all((pixels(a) == pixels(b)).all() for a, b in zip(batch.images, again.images, strict=True))
    alone = run(pipe, seed=13)
    assert np.abs(pixels(alone.images[0]) - pixels(batch.images[3])).max() <= 1
    assert not (pixels(batch.images[0]) == pixels(batch.images[1])).all()


def test_sampler_names_match_a1111_and_every_one_runs(pipe: TextToImagePipeline) -> None:
    assert set(typing.get_args(Sampler)) == {"Automatic", *SAMPLERS}
    for sampler in typing.get_args(Sampler):
        result = run(pipe, sampler=sampler, num_steps=2)
        assert result.images[0].size == (64, 64), sampler
        assert pixels(result.images[0]).std() > 0, f"{sampler} gave a flat image"


def test_progress_is_reported_every_step_with_a_preview(pipe: TextToImagePipeline) -> None:
    steps = []
    pipe(TextToImageParams.from_dict({**BASE, "batch_count": 2}), seed=1,
         on_step=lambda step, total, preview: steps.append((step, total, preview.size)))
    assert [(s, t) for s, t, _ in steps] == [(i, 6) for i in range(1, 7)]
    assert steps[0][2] == (128, 128)  # 32×32 latents, shown 4× larger


def test_img2img_and_inpaint_share_the_loaded_components(pipe: TextToImagePipeline) -> None:
    photo = Image.new("RGB", (96, 80), (200, 40, 40))  # another size: resized to width × height
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    inputs = {"in-photo": photo, "in-mask": mask}
    img2img = run(pipe, inputs=inputs, init_image="in-photo", strength=0.5)
    inpaint = run(pipe, inputs=inputs, init_image="in-photo", mask="in-mask", strength=0.9, mask_blur=0)
    assert img2img.images[0].size == inpaint.images[0].size == (64, 64)
    assert img2img.info["mode"] == "img2img" and inpaint.info["mode"] == "inpaint"
    for mode in ("img2img", "inpaint"):
        derived = pipe._derived[mode]
        assert derived.unet is pipe.pipe.unet and derived.vae is pipe.pipe.vae
        assert derived.text_encoder is pipe.pipe.text_encoder
    result = pixels(inpaint.images[0])
    assert (result[:16, :] == [200, 40, 40]).all()  # outside the mask: the photo, exactly
    assert not (result[20:44, 20:44] == [200, 40, 40]).all()  # inside: repainted


def test_size_zero_is_the_models_native_size_or_the_pictures_shape(pipe: TextToImagePipeline) -> None:
    native = pipe.native_size()
    plain = run(pipe, width=0, height=0)
    assert plain.images[0].size == (native, native) and plain.info["size"] == f"{native}x{native}"
    wide = {"in-wide": Image.new("RGB", (400, 200), (10, 90, 200))}
    img2img = run(pipe, inputs=wide, init_image="in-wide", strength=0.5, width=0, height=0)
    assert img2img.images[0].size == native_shape((400, 200), native) == (88, 64)  # 64 px is the floor
    assert native_shape((768, 512), 512) == (624, 416)  # SD 1.x: the photo's shape at about 512² pixels


def test_stop_between_steps_keeps_nothing_unless_asked(pipe: TextToImagePipeline) -> None:
    calls = {"n": 0}

    def stop_after_first() -> bool:
        calls["n"] += 1
        return calls["n"] >= 1

    with pytest.raises(Interrupted, match="stopped at step 1 of 3"):
        pipe(TextToImageParams.from_dict(BASE), seed=1, should_stop=stop_after_first)
    partial = pipe(TextToImageParams.from_dict({**BASE, "keep_partial": True}), seed=1,
                   should_stop=lambda: True)
    assert partial.info["partial"] is True and len(partial.images) == 1


def test_clip_skip_changes_the_conditioning(pipe: TextToImagePipeline) -> None:
    one, two = run(pipe, clip_skip=1), run(pipe, clip_skip=2)
    assert not (pixels(one.images[0]) == pixels(two.images[0])).all()
    run(pipe, clip_skip=3)  # the tiny encoder's first layer
    with pytest.raises(ValueError, match="`clip_skip` is 4, but this model's text encoder has 3 layers"):
        run(pipe, clip_skip=4)


def test_long_prompts_are_encoded_in_chunks_and_every_word_counts(pipe: TextToImagePipeline) -> None:
    head = "a very detailed painting of a castle, " * 12  # ~100 tokens: two chunks
    with_tail = run(pipe, prompt=head + "at night under a full moon")
    without = run(pipe, prompt=head)
    assert "warnings" not in with_tail.info
    assert not (pixels(with_tail.images[0]) == pixels(without.images[0])).all()  # words past 75 tokens matter
    huge = run(pipe, prompt="castle " * 700)
    assert huge.info["warnings"] == ["the prompt is 700 tokens; only the first 600 were used"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"width": 500}, "`width` must be 0 for the model's native size, or a multiple of 8 from 64, got 500"),
        ({"height": -8}, "`height` must be 0 for the model's native size, or a multiple of 8 from 64, got -8"),
        ({"height": 32}, "`height` must be 0 .* got 32"),
        ({"width": 100_000}, "`width` must be at most 2048, got 100000"),
        ({"width": 2048, "height": 2048 + 8}, "`height` must be at most 2048"),
        ({"sampler": "Euler b"}, "`sampler` must be one of"),
        ({"num_steps": 0}, "`num_steps` must be at least 1"),
        ({"cfg_scale": float("nan")}, "`cfg_scale` must be a finite number"),
        ({"cfg_scale": -1}, "`cfg_scale` must be at least 0.0, got -1.0"),
        ({"strength": -0.5}, "`strength` must be at least 0.0"),
        ({"mask": "in-abc"}, "`mask` needs an `init_image`"),
        ({"init_image": "in-abc", "strength": 0.2, "num_steps": 3},  # int(0.6): no step would run
         "`strength` × `num_steps` must come to at least one denoising step .* got 0.2 × 3"),
        ({"prompt": "x" * 10 * 1024 * 1024}, "`prompt` is 10,485,760 characters; at most 10,000"),
    ],
)
def test_bad_params_are_named(params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        TextToImageParams.from_dict({**BASE, **params})


def test_a1111_fields(tiny_folder: Path) -> None:
    params = TextToImageParams.from_dict({**BASE, "sampler": "DPM++ 2M Karras", "clip_skip": 2, "cfg_scale": 5})
    assert params.a1111_fields() == {"Steps": 3, "Sampler": "DPM++ 2M Karras", "CFG scale": 5.0, "Size": "64x64",
                                     "Clip skip": 2}


def test_hub_id_loads_from_the_cache_offline(tiny_folder: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    commit = install_in_hub_cache(tiny_folder, tmp_path / "hub", "atelier-test/tiny-sd")
    pipe = TextToImagePipeline.load("atelier-test/tiny-sd", device="cpu")
    assert pipe.model_hash == commit[:10]
    assert run(pipe).images[0].size == (64, 64)
    with pytest.raises(ModelError, match="model atelier-test/missing is not downloaded and Atelier is offline"):
        TextToImagePipeline.load("atelier-test/missing", device="cpu")


def test_vae_tiling_is_a_load_option(tiny_folder: Path) -> None:
    tiled = TextToImagePipeline.load(str(tiny_folder), device="cpu", vae_tiling=True, low_vram=True)
    assert tiled.pipe.vae.use_tiling  # low_vram only applies on CUDA; on the CPU the model loads as usual
    assert run(tiled).images[0].size == (64, 64)


def test_sources_that_are_nothing_are_refused(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="neither a folder, a checkpoint file nor a Hugging Face hub id"):
        TextToImagePipeline.load("not a model", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PipelineError, match="not a diffusers model folder"):
        TextToImagePipeline.load(str(tmp_path / "empty"), device="cpu")


def test_the_cpu_dtype_choice() -> None:
    import torch

    from pipelines.diffusion_utils import cpu_has_fast_bf16, pick_dtype

    assert pick_dtype("cpu") == (torch.bfloat16 if cpu_has_fast_bf16() else torch.float32)
    assert pick_dtype("cuda:0") == torch.float16 and pick_dtype("cpu", "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'"):
        pick_dtype("cpu", "fp8")
