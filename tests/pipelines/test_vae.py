"""The VAE pipeline on a tiny random AutoencoderKL (f = 2, native 32²), offline: the four modes, exact keyframes,
determinism, odd inputs, tiling, progress and stop, bad params, and where models come from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines.base import Interrupted, PipelineError
from pipelines.catalog import Catalog
from pipelines.models import ModelError
from pipelines.vae import KNOWN_HUB_VAES, WEIGHTS, VaeParams, VaePipeline
from tests.conftest import wait_for
from tests.support.model_trees import scanned
from tests.support.photos import photo
from tests.support.tiny_sd import install_in_hub_cache, save_tiny_vae

CAT, ASTRO = photo("chelsea").resize((32, 32)), photo("astronaut", 32)
INPUTS = {"in-cat": CAT, "in-astro": ASTRO, "in-red": Image.new("RGB", (32, 32), (200, 30, 30))}


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_vae(tmp_path_factory.mktemp("models") / "tiny-vae")


@pytest.fixture(scope="module")
def pipe(tiny_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaePipeline]:
    yield VaePipeline.load(str(tiny_folder), device="cpu", dtype="fp32")


def run(pipe: VaePipeline, seed: int = 0, inputs: dict[str, Image.Image] | None = None, **params: object):
    return pipe(VaeParams.from_dict(params), seed=seed, inputs=INPUTS if inputs is None else inputs)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def same(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and bool((pixels(a) == pixels(b)).all())


def reconstruction(pipe: VaePipeline, ref: str, inputs: dict[str, Image.Image] | None = None) -> Image.Image:
    return run(pipe, mode="reconstruct", image_a=ref, inputs=inputs).images[0]


# -- sample ------------------------------------------------------------------------------------------------
def test_samples_are_deterministic_and_each_reproducible_from_its_own_seed(pipe: VaePipeline) -> None:
    batch = run(pipe, seed=5, num_images=3)
    assert batch.seeds == [5, 6, 7] and [i.size for i in batch.images] == [(32, 32)] * 3  # the native size
    again = run(pipe, seed=5, num_images=3)
    assert all(same(a, b) for a, b in zip(batch.images, again.images, strict=True))
    assert same(run(pipe, seed=7).images[0], batch.images[2])
    assert not same(batch.images[0], batch.images[1])
    flat = run(pipe, seed=5, num_images=2, temperature=0.0)  # the zero latent, whatever the seed
    assert same(flat.images[0], flat.images[1])


def test_sample_size_and_latent_shape(pipe: VaePipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = []
    decode = pipe.vae.decode
    monkeypatch.setattr(pipe.vae, "decode", lambda z, **kw: shapes.append(tuple(z.shape)) or decode(z, **kw))
    result = run(pipe, width=24, height=16, num_images=1)
    assert result.images[0].size == (24, 16) and shapes == [(1, 4, 8, 12)]  # (B, C, H/f, W/f)
    assert result.info["size"] == "24x16" and result.info["tiled"] is False


def test_sizes_above_the_native_one_decode_in_tiles(pipe: VaePipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    tiles = []
    tiled_decode = pipe.vae.tiled_decode
    monkeypatch.setattr(pipe.vae, "tiled_decode", lambda z, **kw: tiles.append(z.shape) or tiled_decode(z, **kw))
    tiled = run(pipe, width=64, height=48, num_images=1)
    assert tiled.images[0].size == (64, 48) and tiled.info["tiled"] is True and len(tiles) == 1
    whole = run(pipe, width=64, height=48, num_images=1, tiled=False)
    assert whole.images[0].size == (64, 48) and whole.info["tiled"] is False and len(tiles) == 1


def test_the_model_factor_is_rechecked_at_run_time(pipe: VaePipeline) -> None:
    with pytest.raises(PipelineError, match="`width` must be a multiple of 2 for this model, got 31"):
        pipe(VaeParams(width=31), seed=0)  # built without check(): only the pipeline knows f


# -- reconstruct -------------------------------------------------------------------------------------------
def test_reconstruct_reports_psnr_and_a_comparison_sheet(pipe: VaePipeline) -> None:
    result = run(pipe, mode="reconstruct", image_a="in-cat")
    rebuilt, sheet = result.images
    assert rebuilt.size == (32, 32) and sheet.size == (3 * 32 + 2 * 2, 32) and result.seeds == [0, 0]
    mse = np.mean((np.asarray(CAT, dtype=np.float64) - np.asarray(rebuilt, dtype=np.float64)) ** 2)
    psnr = 10 * np.log10(255**2 / mse)
    assert result.info["psnr_db"] == round(psnr, 2)
    assert f"PSNR {psnr:.2f} dB" in result.info["notes"][0]
    assert same(sheet.crop((0, 0, 32, 32)), CAT) and same(sheet.crop((34, 0, 66, 32)), rebuilt)
    amplified = np.clip(np.abs(pixels(CAT) - pixels(rebuilt)) * 4, 0, 255)
    assert (pixels(sheet.crop((68, 0, 100, 32))) == amplified).all()


def test_odd_sizes_are_centre_cropped_and_alpha_is_flattened_on_white(pipe: VaePipeline) -> None:
    odd = photo("astronaut", 35).resize((35, 31))
    result = run(pipe, mode="reconstruct", image_a="in-odd", inputs={"in-odd": odd})
    assert result.images[0].size == (34, 30)
    assert result.info["warnings"] == ["image A was centre-cropped from 35x31 to 34x30 (this model needs "
                                       "multiples of 2)"]
    assert same(result.images[0], reconstruction(pipe, "in-crop", {"in-crop": odd.crop((0, 0, 34, 30))}))
    clear = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    white = Image.new("RGB", (32, 32), "white")
    assert same(reconstruction(pipe, "in", {"in": clear}), reconstruction(pipe, "in", {"in": white}))


# -- interpolate -------------------------------------------------------------------------------------------
def test_interpolation_starts_and_ends_exactly_on_the_keyframes(pipe: VaePipeline) -> None:
    result = run(pipe, seed=3, mode="interpolate", image_a="in-cat", image_b="in-astro", frames=5, loop=False,
                 fps=8)
    animation = result.animations[0]
    assert len(animation.frames) == 5 and (animation.fps, animation.loop) == (8, False) and result.seeds == [3]
    assert same(animation.frames[0], reconstruction(pipe, "in-cat"))
    assert same(animation.frames[-1], reconstruction(pipe, "in-astro"))
    assert result.images[0].size == (3 * 32 + 2 * 2, 2 * 32 + 2)  # the frame sheet, 3 columns
    three = run(pipe, mode="interpolate", image_a="in-cat", image_b="in-astro", image_c="in-red", frames=5,
                loop=False).animations[0].frames
    assert same(three[2], reconstruction(pipe, "in-astro")) and same(three[4], reconstruction(pipe, "in-red"))


def test_a_loop_does_not_repeat_its_first_frame(pipe: VaePipeline) -> None:
    frames = run(pipe, mode="interpolate", image_a="in-cat", image_b="in-astro", frames=4).animations[0].frames
    assert len(frames) == 4 and same(frames[0], reconstruction(pipe, "in-cat"))
    assert same(frames[2], reconstruction(pipe, "in-astro"))  # half way round: the other keyframe
    assert not same(frames[-1], frames[0])


def test_slerp_and_lerp_differ_between_the_keyframes(pipe: VaePipeline) -> None:
    common = {"mode": "interpolate", "image_a": "in-cat", "image_b": "in-red", "frames": 3, "loop": False}
    spherical = run(pipe, **common).animations[0].frames
    straight = run(pipe, path="lerp", **common).animations[0].frames
    assert same(spherical[0], straight[0]) and same(spherical[2], straight[2])
    assert not same(spherical[1], straight[1])


def test_other_sizes_are_resized_to_image_a_with_a_warning(pipe: VaePipeline) -> None:
    inputs = {**INPUTS, "in-wide": photo("chelsea", 40)}  # 40×27
    result = run(pipe, mode="interpolate", image_a="in-cat", image_b="in-wide", frames=2, loop=False, inputs=inputs)
    assert result.info["warnings"] == ["image B was resized from 40x27 to 32x32 to match image A"]
    assert {frame.size for frame in result.animations[0].frames} == {(32, 32)}


def test_upscale_resamples_every_output(pipe: VaePipeline) -> None:
    sample = run(pipe, upscale=2)
    assert sample.images[0].size == (64, 64) and "no new detail" in sample.info["notes"][0]
    animation = run(pipe, mode="interpolate", image_a="in-cat", image_b="in-astro", frames=2, upscale=3)
    assert animation.animations[0].frames[0].size == (96, 96)
    assert animation.images[0].size == (2 * 96 + 2, 96)  # the sheet is made of the upscaled frames


# -- arithmetic --------------------------------------------------------------------------------------------
def test_arithmetic_a_minus_a_plus_c_is_c(pipe: VaePipeline) -> None:
    result = run(pipe, mode="arithmetic", image_a="in-cat", image_b="in-cat", image_c="in-astro")
    assert len(result.images) == 1 and same(result.images[0], reconstruction(pipe, "in-astro"))
    mixed = run(pipe, mode="arithmetic", image_a="in-cat", image_b="in-red", image_c="in-astro")
    assert not same(mixed.images[0], result.images[0])


# -- progress, stop, bad input -----------------------------------------------------------------------------
def test_progress_counts_every_network_pass_and_stop_interrupts(pipe: VaePipeline) -> None:
    steps = []
    params = VaeParams.from_dict({"mode": "interpolate", "image_a": "in-cat", "image_b": "in-astro", "frames": 3})
    pipe(params, seed=0, inputs=INPUTS, on_step=lambda i, n, preview: steps.append((i, n, preview is not None)))
    assert steps == [(1, 5, False), (2, 5, False), (3, 5, True), (4, 5, True), (5, 5, True)]  # 2 encodes, 3 decodes
    polls = iter([False, False, False, True])
    with pytest.raises(Interrupted, match="stopped after 3 of 5 steps"):
        pipe(params, seed=0, inputs=INPUTS, should_stop=lambda: next(polls))


@pytest.mark.parametrize(("values", "message"), [
    ({"frames": 10_000}, "`frames` must be at most 600, got 10000"),
    ({"temperature": 5}, "`temperature` must be at most 3.0, got 5.0"),
    ({"num_images": -1}, "`num_images` must be at least 1, got -1"),
    ({"width": 30}, r"`width` must be 0 \(the model's native size\) or a multiple of 8, got 30"),
    ({"height": 4000}, "`height` must be at most 2048, got 4000"),
    ({"upscale": 5}, "`upscale` must be at most 4, got 5"),
    ({"mode": "reconstruct"}, "`image_a` is required in reconstruct mode"),
    ({"mode": "interpolate", "image_a": "x"}, "`image_b` is required in interpolate mode"),
    ({"mode": "arithmetic", "image_a": "x", "image_b": "y"}, "`image_c` is required in arithmetic mode"),
    ({"mode": "dream"}, "`mode` must be one of"),
])
def test_bad_params_are_clear_value_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VaeParams.from_dict(values)


def test_bad_input_images_are_pipeline_errors(pipe: VaePipeline) -> None:
    with pytest.raises(PipelineError, match="image A is 2050x8; at most 2048 pixels per side"):
        run(pipe, mode="reconstruct", image_a="in-big", inputs={"in-big": Image.new("RGB", (2050, 8))})
    with pytest.raises(PipelineError, match="image A is 1x1; this model needs at least 2x2 pixels"):
        run(pipe, mode="reconstruct", image_a="in-dot", inputs={"in-dot": Image.new("RGB", (1, 1))})
    with pytest.raises(PipelineError, match="`image_b` image 'in-gone' was not sent with the job"):
        run(pipe, mode="interpolate", image_a="in-cat", image_b="in-gone")


# -- models ------------------------------------------------------------------------------------------------
def test_the_library_hashes_the_weights_and_loading_counts_them(pipe: VaePipeline, tiny_folder: Path) -> None:
    library = scanned(tiny_folder.parent)
    (entry,) = [e for e in VaePipeline.list_models(library) if e.id == tiny_folder.name]
    digest = hashlib.sha256((tiny_folder / WEIGHTS).read_bytes()).hexdigest()
    assert wait_for(lambda: library.sha256(entry.path)) == digest  # hashed in the background
    assert pipe.nbytes() == sum(p.numel() * 4 for p in pipe.vae.parameters()) > 0
    assert VaePipeline.load(str(tiny_folder), device="cpu", dtype="bf16").vae.dtype == torch.bfloat16
    # SD VAEs overflow in fp16 (config force_upcast): diffusers' flag says to run them in fp32
    assert VaePipeline.load(str(tiny_folder), device="cpu", dtype="fp16").vae.dtype == torch.float32


def test_a_hub_vae_loads_from_the_cache_offline(tiny_folder: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    commit = install_in_hub_cache(tiny_folder, tmp_path / "hub", "atelier-test/tiny-vae")
    loaded = VaePipeline.load("atelier-test/tiny-vae", device="cpu", dtype="fp32")
    assert loaded.model_hash == commit[:10] and loaded.factor == 2
    with pytest.raises(ModelError, match="model atelier-test/missing is not downloaded and Atelier is offline"):
        VaePipeline.load("atelier-test/missing", device="cpu")


def test_unknown_or_non_vae_sources_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(PipelineError, match="'/no/such/vae' is neither a folder nor a Hugging Face hub id"):
        VaePipeline.load("/no/such/vae", device="cpu")
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(PipelineError, match="unet holds a UNet2DModel, not an AutoencoderKL"):
        VaePipeline.load(tmp_path / "unet", device="cpu")
    (tmp_path / "sd" / "vae").mkdir(parents=True)
    (tmp_path / "sd" / "vae" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL"}))
    with pytest.raises(PipelineError, match=r"sd is not a VAE model folder: no readable config.json; its VAE is in"):
        VaePipeline.load(tmp_path / "sd", device="cpu")


def test_the_catalogue_lists_vae_folders_and_hub_vaes_apart_from_text_to_image(
        tiny_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    models = tiny_folder.parent
    (models / "sd-model").mkdir(exist_ok=True)
    (models / "sd-model" / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    (models / "carded").mkdir(exist_ok=True)  # a VAE config with a card but no weights
    (models / "carded" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL",
                                                               "block_out_channels": [8, 16, 32, 32]}))
    (models / "carded" / "MODEL_CARD.md").write_text("---\nlicence: CC0-1.0\ndescription: emoji VAE\n---\n# x\n")
    catalog = Catalog(models_dirs=[models])
    vaes = {m.id: m for m in catalog.models("vae")}
    assert (vaes["tiny-vae"].origin, vaes["tiny-vae"].status) == ("local", "installed")
    assert vaes["tiny-vae"].description == "AutoencoderKL folder (f = 2)"
    assert (vaes["carded"].licence, vaes["carded"].description) == ("CC0-1.0", "emoji VAE")
    with pytest.raises(ValueError, match=f"VAE folder carded has no {WEIGHTS}"):
        catalog.model("carded", "vae")
    for repo, *_ in KNOWN_HUB_VAES:
        assert (vaes[repo].origin, vaes[repo].status, vaes[repo].licence) == ("hub", "not downloaded (offline)", "MIT")
    assert "sd-model" not in vaes
    text_to_image = {m.id for m in catalog.models("text_to_image")}
    assert "sd-model" in text_to_image and text_to_image.isdisjoint({"tiny-vae", "carded", *vaes})
    entry = catalog.model("someone/their-vae", "vae")  # any hub id can name a VAE too
    assert (entry.kind, entry.status) == ("vae", "not downloaded (offline)")
