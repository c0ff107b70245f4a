"""Text to Image through the UI and the queue: a diffusers folder and a single-file checkpoint, offline."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from studio.accounts import LOCAL_USER
from studio.gallery import parse_parameters, read_recipe
from studio.services import Services
from studio.styles import Style
from tests.conftest import make_config
from tests.support.tiny_sd import save_tiny_checkpoint, save_tiny_sd
from tests.ui.serving import serve

pytestmark = pytest.mark.slow
PARAMS = {"prompt": "a lighthouse at dusk", "negative_prompt": "blurry", "sampler": "DPM++ 2M Karras",
          "num_steps": 3, "cfg_scale": 6.5, "width": 64, "height": 80}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Client]]:
    root = tmp_path_factory.mktemp("t2i")
    models = root / "models"
    models.mkdir()
    save_tiny_sd(models / "tiny-sd")
    save_tiny_checkpoint(models / "tiny-file.safetensors")
    (models / "old.ckpt").write_bytes(b"not loaded")
    with serve(make_config(root / "data", models_dirs=(models,), plugins=())) as served:
        yield served


def generate(client: Client, model: str, seed: int, **params: object) -> str:
    status, _, results, job_id = client.predict(model=model, seed=seed, **params,
                                                api_name="/generate_text_to_image")
    assert status.startswith("Done"), status
    return job_id


def image_of(services: Services, artwork_id: str) -> np.ndarray:
    return np.asarray(Image.open(services.gallery.get(artwork_id).path))


@pytest.mark.parametrize("model", ["tiny-sd", "tiny-file.safetensors"])
def test_a_local_model_makes_a1111_readable_art_that_reuse_reproduces(served, model: str) -> None:
    services, client = served
    job_id = generate(client, model, 77, **PARAMS)
    artwork = services.gallery.get(f"{job_id}-0")
    with Image.open(artwork.path) as png:
        assert png.size == (64, 80)
        fields = parse_parameters(png.text["parameters"])
    assert fields["prompt"] == "a lighthouse at dusk" and fields["negative_prompt"] == "blurry"
    assert (fields["Steps"], fields["Sampler"], fields["CFG scale"], fields["Seed"], fields["Size"]) == (
        "3", "DPM++ 2M Karras", "6.5", "77", "64x80")
    assert fields["Model"] == model
    if model.endswith(".safetensors"):
        assert len(fields["Model hash"]) == 10  # A1111's short sha256 of the file
    assert read_recipe(artwork.path).params["sampler"] == "DPM++ 2M Karras"

    reused = client.predict(f"{job_id}-0", api_name="/reuse_settings")
    names = [p["parameter_name"] for p in client.view_api(print_info=False, return_format="dict")[
        "named_endpoints"]["/generate_text_to_image"]["parameters"]]
    values = dict(zip(names, reused[:len(names)], strict=True))
    assert values["model"] == model and values["seed"] == 77 and values["sampler"] == "DPM++ 2M Karras"
    again = generate(client, **values)
    assert (image_of(services, f"{again}-0") == image_of(services, f"{job_id}-0")).all()


def test_img2img_and_inpaint_from_the_image_editor(served, tmp_path: Path) -> None:
    services, client = served
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 80), (30, 90, 200)).save(photo)
    editor = {"background": handle_file(str(photo)), "layers": [], "composite": None}
    job_id = generate(client, "tiny-sd", 5, **{**PARAMS, "init_image": editor, "strength": 0.6})
    recipe = services.gallery.get(f"{job_id}-0").recipe
    assert recipe.info["mode"] == "img2img" and recipe.params["init_image"].startswith("in-")
    assert services.inputs.exists(recipe.params["init_image"])  # kept, so the recipe can be re-run

    stroke = Image.new("RGBA", (64, 80), (0, 0, 0, 0))
    stroke.paste((255, 255, 255, 255), (20, 10, 44, 38))
    stroke.save(tmp_path / "stroke.png")
    editor["layers"] = [handle_file(str(tmp_path / "stroke.png"))]
    job_id = generate(client, "tiny-sd", 5, **{**PARAMS, "init_image": editor, "strength": 0.9,
                                               "mask_blur": 0})  # a hard edge: the photo exactly up to the stroke
    artwork = services.gallery.get(f"{job_id}-0")
    assert artwork.recipe.info["mode"] == "inpaint" and artwork.recipe.params["mask"].startswith("in-")
    pixels = image_of(services, artwork.id)
    assert (pixels[:8, :] == [30, 90, 200]).all()  # unpainted: the photo exactly
    assert not (pixels[14:34, 24:40] == [30, 90, 200]).all()  # painted: repainted


def test_the_image_editor_takes_only_png_jpeg_and_webp(served, tmp_path: Path) -> None:
    """Gradio's editor opened (and converted) any format Pillow knows before the studio saw it: EPS via Ghostscript."""
    services, client = served
    Image.new("RGB", (64, 80), (30, 90, 200)).save(tmp_path / "photo.bmp")
    Image.new("RGBA", (64, 80), (0, 0, 0, 0)).save(tmp_path / "stroke.tiff")
    Image.new("RGB", (64, 80), (30, 90, 200)).save(tmp_path / "photo.png")
    stored = set(services.inputs.root.glob("in-*.png"))
    for background, layer in (("photo.bmp", None), ("photo.png", "stroke.tiff")):
        editor = {"background": handle_file(str(tmp_path / background)), "composite": None,
                  "layers": [handle_file(str(tmp_path / layer))] if layer else []}
        with pytest.raises(Exception, match="`init_image` is not a PNG, JPEG or WebP picture"):
            client.predict(model="tiny-sd", seed=1, **{**PARAMS, "init_image": editor},
                           api_name="/generate_text_to_image")
    assert set(services.inputs.root.glob("in-*.png")) == stored  # nothing stored for them


def test_a_pickle_checkpoint_is_listed_but_refused(served) -> None:
    services, client = served
    table = client.predict(api_name="/list_models")
    row = next(dict(zip(table["headers"], r, strict=True)) for r in table["data"] if r[0] == "old.ckpt")
    assert row["Status"].startswith("⚠ refused: a pickle file, which can run code when loaded")
    with pytest.raises(Exception, match="old.ckpt: a pickle file, which can run code when loaded"):
        generate(client, "old.ckpt", 1, **PARAMS)


def test_the_user_sees_when_a_prompt_was_cut(served) -> None:
    _, client = served
    status, *_ = client.predict(model="tiny-sd", seed=1, **{**PARAMS, "prompt": "castle " * 700},
                                api_name="/generate_text_to_image")
    assert status.startswith("Done") and "⚠ the prompt is 700 tokens; only the first 600 were used" in status


def test_the_models_tab_shows_what_the_worker_holds_against_its_budget(served) -> None:
    services, client = served
    generate(client, "tiny-sd", 1, **PARAMS)
    table = client.predict(api_name="/list_workers")
    worker = dict(zip(table["headers"], table["data"][0], strict=True))
    assert "tiny-sd" in worker["Models in memory"]
    budget = services.config.model_memory_gb
    assert re.fullmatch(rf"RAM 0\.\d\d / {budget:.2f} GB", worker["Memory used / budget"])  # a CPU worker: no VRAM


def reuse(client: Client, artwork_id: str) -> dict[str, object]:
    reused = client.predict(artwork_id, api_name="/reuse_settings")
    names = [p["parameter_name"] for p in client.view_api(print_info=False, return_format="dict")[
        "named_endpoints"]["/generate_text_to_image"]["parameters"]]
    return dict(zip(names, reused[:len(names)], strict=True))


def test_styles_apply_when_generating_and_reuse_takes_them_back_out(served) -> None:
    services, client = served
    services.styles.save(LOCAL_USER, Style("dusk", "{prompt}, at dusk", "daylight"))
    job_id = generate(client, "tiny-sd", 5, **{**PARAMS, "prompt": "a lighthouse"}, styles=["dusk"])
    artwork = services.gallery.get(f"{job_id}-0")
    recipe = read_recipe(artwork.path)
    assert recipe.params["prompt"] == "a lighthouse, at dusk"
    assert recipe.params["negative_prompt"] == "blurry, daylight"
    with Image.open(artwork.path) as png:
        assert parse_parameters(png.text["parameters"])["Styles array"] == '["dusk"]'
    values = reuse(client, artwork.id)
    assert (values["prompt"], values["negative_prompt"], values["styles"]) == ("a lighthouse", "blurry", ["dusk"])
    again = generate(client, **values)
    assert (image_of(services, f"{again}-0") == image_of(services, artwork.id)).all()

    services.styles.save(LOCAL_USER, Style("dusk", "{prompt} at night"))  # the style reads differently now
    values = reuse(client, artwork.id)
    assert (values["prompt"], values["styles"]) == ("a lighthouse, at dusk", [])  # as made, not styled twice
