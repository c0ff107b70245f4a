"""The AUTOMATIC1111-compatible API over real HTTP, driven the way A1111's own documentation drives it."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image, ImageFilter, PngImagePlugin

from studio.services import Services
from tests.conftest import make_config, wait_for
from tests.support.photos import photo
from tests.support.tiny_sd import tiny_sd_library
from tests.ui.serving import serve_http

SD = "sdapi/v1"
# the `info` fields A1111's Processed.js() returns, which clients read
INFO_FIELDS = {"prompt", "all_prompts", "negative_prompt", "all_negative_prompts", "seed", "all_seeds", "subseed",
               "all_subseeds", "subseed_strength", "width", "height", "sampler_name", "cfg_scale", "steps",
               "batch_size", "restore_faces", "face_restoration_model", "sd_model_name", "sd_model_hash",
               "sd_vae_name", "sd_vae_hash", "seed_resize_from_w", "seed_resize_from_h", "denoising_strength",
               "extra_generation_params", "index_of_first_image", "infotexts", "styles", "job_timestamp",
               "clip_skip", "is_using_inpainting_conditioning", "version"}


@pytest.fixture(scope="module")
def a1111(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, str]]:
    root = tmp_path_factory.mktemp("a1111")
    tiny_sd_library(root / "models")  # tiny-sd, the LoRA `ink`, the embedding `paperstyle`, __colors__
    with serve_http(make_config(root / "data", models_dirs=(root / "models",), plugins=())) as served:
        httpx.post(served[1] + f"{SD}/options", json={"sd_model_checkpoint": "tiny-sd"}, timeout=30)
        yield served


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(text: str) -> Image.Image:
    with Image.open(io.BytesIO(base64.b64decode(text))) as image:
        image.load()
        return image.copy()


def test_the_example_script_of_a1111s_api_documentation_runs_unchanged(a1111, tmp_path) -> None:
    _, url = a1111
    # the API example of A1111's wiki, with `requests` swapped for httpx and a size and step count for a tiny model
    payload = {"prompt": "puppy dog", "steps": 5, "width": 64, "height": 64}
    response = httpx.post(url=f"{url}{SD}/txt2img", json=payload, timeout=120)
    r = response.json()
    for i in r["images"]:
        image = Image.open(io.BytesIO(base64.b64decode(i.split(",", 1)[0])))
        png_payload = {"image": "data:image/png;base64," + i}
        response2 = httpx.post(url=f"{url}{SD}/png-info", json=png_payload, timeout=30)
        pnginfo = PngImagePlugin.PngInfo()
        pnginfo.add_text("parameters", response2.json().get("info"))
        image.save(tmp_path / "output.png", pnginfo=pnginfo)

    assert response.status_code == 200 and len(r["images"]) == 1
    info = json.loads(r["info"])
    assert set(info) >= INFO_FIELDS and info["sd_model_name"] == "tiny-sd" and info["steps"] == 5
    assert info["all_seeds"] == [info["seed"]] and info["seed"] >= 0  # -1 became a real, recorded seed
    assert "puppy dog" in info["infotexts"][0] and f"Seed: {info['seed']}" in info["infotexts"][0]
    assert r["parameters"]["prompt"] == "puppy dog"
    with Image.open(tmp_path / "output.png") as saved:
        assert saved.size == (64, 64) and saved.text["parameters"] == info["infotexts"][0]
    fields = response2.json()["parameters"]
    assert fields["Prompt"] == "puppy dog" and fields["Steps"] == "5" and fields["Seed"] == str(info["seed"])
    assert (fields["Size-1"], fields["Size-2"]) == ("64", "64")


def test_a_seed_and_sampler_reproduce_and_the_gallery_keeps_what_is_saved(a1111) -> None:
    services, url = a1111
    payload = {"prompt": "a lighthouse", "negative_prompt": "fog", "seed": 42, "steps": 3, "width": 64,
               "height": 64, "sampler_name": "DPM++ 2M", "scheduler": "Karras", "cfg_scale": 5, "n_iter": 2}
    before = services.gallery.count()
    first = httpx.post(f"{url}{SD}/txt2img", json=payload, timeout=120).json()
    again = httpx.post(f"{url}{SD}/txt2img", json=payload | {"save_images": False}, timeout=120).json()
    pixels = [[decode(i).tobytes() for i in r["images"]] for r in (first, again)]
    assert pixels[0] == pixels[1] and len(pixels[0]) == 2 and pixels[0][0] != pixels[0][1]
    info = json.loads(first["info"])
    assert info["sampler_name"] == "DPM++ 2M Karras" and info["all_seeds"] == [42, 43]
    assert services.gallery.count() == before + 2  # the unsaved request left nothing behind
    quiet = httpx.post(f"{url}{SD}/txt2img", json=payload | {"send_images": False, "n_iter": 1}, timeout=120).json()
    assert quiet["images"] == [] and json.loads(quiet["info"])["seed"] == 42


def test_tiling_variation_seeds_and_weighted_prompts_come_back_as_a1111_writes_them(a1111) -> None:
    services, url = a1111
    payload = {"prompt": "a (marble:1.3) floor, [tiles|stones]", "seed": 3, "steps": 2, "width": 64, "height": 64,
               "tiling": True}
    done = httpx.post(f"{url}{SD}/txt2img", json=payload, timeout=120).json()
    info = json.loads(done["info"])
    assert info["tiling"] is True and info["infotexts"][0].startswith("a (marble:1.3) floor, [tiles|stones]\n")
    assert "Tiling: True" in info["infotexts"][0]
    varied = {**payload, "tiling": False, "subseed": 8, "subseed_strength": 0.4, "batch_size": 2}
    info = json.loads(httpx.post(f"{url}{SD}/txt2img", json=varied, timeout=120).json()["info"])
    assert (info["subseed"], info["all_subseeds"], info["subseed_strength"]) == (8, [8, 9], 0.4)
    assert "Variation seed: 8, Variation seed strength: 0.4" in info["infotexts"][0]


def test_a_lora_tag_an_embedding_and_emphasis_make_a_picture_with_a1111s_hashes(a1111) -> None:
    services, url = a1111
    loras = httpx.get(f"{url}{SD}/loras", timeout=30).json()
    assert [lora["name"] for lora in loras] == ["ink"]
    assert "paperstyle" in httpx.get(f"{url}{SD}/embeddings", timeout=30).json()["loaded"]
    payload = {"prompt": "a (cat:1.3) paperstyle <lora:ink:0.8>", "seed": 5, "steps": 2, "width": 64, "height": 64}
    done = httpx.post(f"{url}{SD}/txt2img", json=payload, timeout=120)
    assert done.status_code == 200, done.text
    text = json.loads(done.json()["info"])["infotexts"][0]
    assert text.startswith("a (cat:1.3) paperstyle <lora:ink:0.8>\n")
    assert 'Lora hashes: "ink: ' in text and 'TI hashes: "paperstyle: ' in text
    fields = httpx.post(f"{url}{SD}/png-info", json={"image": done.json()["images"][0]}, timeout=30).json()
    assert fields["parameters"]["Lora hashes"].startswith("ink: ")
    artwork = services.gallery.page(limit=1)[0]
    assert artwork.recipe.params["prompt"] == payload["prompt"]
    unweighted = {**payload, "prompt": "a (cat:1.3) paperstyle <lora:ink:0>"}
    base = httpx.post(f"{url}{SD}/txt2img", json=unweighted | {"save_images": False}, timeout=120).json()
    assert decode(base["images"][0]).tobytes() != decode(done.json()["images"][0]).tobytes()  # the LoRA acted
    refused = httpx.post(f"{url}{SD}/txt2img", json={**payload, "prompt": "a cat <lora:inky:1>"}, timeout=30)
    assert refused.status_code == 422 and "inky" in refused.text and "ink" in refused.text


def test_img2img_inpaints_only_inside_the_mask(a1111) -> None:
    _, url = a1111
    source = photo("chelsea").convert("RGB").resize((64, 64))
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    payload = {"init_images": [b64_png(source)], "mask": b64_png(mask), "prompt": "a tabby", "steps": 3,
               "denoising_strength": 0.9, "width": 64, "height": 64, "seed": 1}
    result = httpx.post(f"{url}{SD}/img2img", json=payload, timeout=120)
    assert result.status_code == 200, result.text
    out = np.asarray(decode(result.json()["images"][0]).convert("RGB"), dtype=np.int16)
    src = np.asarray(source, dtype=np.int16)
    outside = np.asarray(mask.filter(ImageFilter.GaussianBlur(4))) == 0  # A1111's default mask blur, 4 px
    assert np.array_equal(out[outside], src[outside]) and np.abs(out[~outside] - src[~outside]).mean() > 1
    info = json.loads(result.json()["info"])
    assert info["denoising_strength"] == 0.9
    assert "Mask blur: 4" in info["infotexts"][0] and "Inpaint area: Only masked" in info["infotexts"][0]

    grown = httpx.post(f"{url}{SD}/img2img", json={"init_images": [b64_png(source)], "prompt": "a tabby", "steps": 3,
                                                   "denoising_strength": 0.9, "outpaint_right": 32, "mask_blur": 0},
                       timeout=120)
    assert grown.status_code == 200, grown.text
    wide = np.asarray(decode(grown.json()["images"][0]).convert("RGB"), dtype=np.int16)
    assert wide.shape == (64, 96, 3) and np.array_equal(wide[:, :64], src)

    tiled = httpx.post(f"{url}{SD}/img2img", json={"init_images": [b64_png(source)], "prompt": "a tabby", "steps": 3,
                                                   "denoising_strength": 0.5, "width": 64, "height": 64,
                                                   "sd_upscale": True, "sd_upscale_overlap": 16}, timeout=120)
    assert tiled.status_code == 200, tiled.text
    assert decode(tiled.json()["images"][0]).size == (128, 128)
    assert "SD upscale overlap: 16" in json.loads(tiled.json()["info"])["infotexts"][0]

    plain = httpx.post(f"{url}{SD}/img2img", json={"init_images": [b64_png(source)], "steps": 3, "width": 64,
                                                   "height": 64, "denoising_strength": 0.5}, timeout=120)
    assert plain.status_code == 200 and len(plain.json()["images"]) == 1


def test_progress_shows_a_running_job_and_interrupt_stops_it(a1111) -> None:
    _, url = a1111
    answer: dict[str, Any] = {}
    call = threading.Thread(target=lambda: answer.update(httpx.post(
        f"{url}{SD}/txt2img", json={"prompt": "slow", "steps": 150, "width": 64, "height": 64}, timeout=300).json()))
    call.start()
    seen = wait_for(lambda: (p := httpx.get(f"{url}{SD}/progress", timeout=30).json())["state"]["sampling_step"] > 1
                    and p, 120, "the job to make progress")
    assert 0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == 150 and seen["eta_relative"] >= 0
    assert seen["state"]["job"].startswith("task(") and seen["textinfo"].startswith("Step")
    assert httpx.post(f"{url}{SD}/interrupt", timeout=30).status_code == 200
    call.join(120)
    assert answer["images"] == [] and json.loads(answer["info"])["interrupted"] is True
    idle = httpx.get(f"{url}{SD}/progress", params={"skip_current_image": True}, timeout=30).json()
    assert idle["progress"] == 0 and idle["current_image"] is None


def test_lists_options_and_memory_have_a1111s_shapes(a1111) -> None:
    _, url = a1111
    models = httpx.get(f"{url}{SD}/sd-models").json()
    tiny = next(m for m in models if m["model_name"] == "tiny-sd")
    assert set(tiny) == {"title", "model_name", "hash", "sha256", "filename", "config"}
    assert httpx.get(f"{url}{SD}/options").json()["sd_model_checkpoint"] == tiny["title"]
    # a title with its hash, as A1111 clients send it, selects the model too
    chosen = httpx.post(f"{url}{SD}/options", json={"sd_model_checkpoint": tiny["title"], "unknown": 1})
    assert chosen.status_code == 200
    samplers = httpx.get(f"{url}{SD}/samplers").json()
    assert {"Euler a", "DPM++ 2M Karras"} <= {s["name"] for s in samplers} and set(samplers[0]) == {
        "name", "aliases", "options"}
    assert [s["name"] for s in httpx.get(f"{url}{SD}/schedulers").json()] == ["automatic", "karras"]
    memory = httpx.get(f"{url}{SD}/memory").json()
    assert memory["ram"]["total"] > memory["ram"]["free"] > 0 and "error" in memory["cuda"]
    assert httpx.post(f"{url}{SD}/refresh-checkpoints").status_code == 200


def test_what_atelier_cannot_do_is_refused_by_name(a1111) -> None:
    _, url = a1111
    base = {"prompt": "x", "steps": 1, "width": 64, "height": 64}
    cases = [
        ({"enable_hr": True, "hr_upscaler": "4x-nothing", "hr_second_pass_steps": 2}, "unknown Upscaler '4x-nothing'"),
        ({"restore_faces": True}, "restore_faces"),
        ({"styles": ["cinematic"]}, "unknown style 'cinematic'"),
        ({"sampler_name": "PLMS"}, "unknown sampler 'PLMS'"),
        ({"scheduler": "exponential"}, "scheduler"),
        ({"override_settings": {"sd_model_checkpoint": "nope.safetensors [abcdef12]"}}, "unknown model 'nope"),
        ({"width": 100}, "width"),
        ({"steps": 0}, "steps"),
        ({"cfg_scale": float("inf")}, "cfg_scale"),
    ]
    for change, words in cases:
        response = httpx.post(f"{url}{SD}/txt2img", content=json.dumps(base | change), timeout=60,
                              headers={"content-type": "application/json"})
        assert response.status_code in (404, 422) and words in response.text, (change, response.text)
    bad_image = httpx.post(f"{url}{SD}/img2img", json={"init_images": ["not base64!"]}, timeout=30)
    assert bad_image.status_code == 422 and "init_images" in bad_image.text
    not_png = httpx.post(f"{url}{SD}/png-info", json={"image": base64.b64encode(b"GIF89a").decode()}, timeout=30)
    assert not_png.status_code == 422 and "image" in not_png.text
    long_text = PngImagePlugin.PngInfo()
    long_text.add_text("parameters", "x" * 200_001)  # once minutes of the server's time; now refused at once
    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG", pnginfo=long_text)
    too_long = httpx.post(f"{url}{SD}/png-info", json={"image": base64.b64encode(png.getvalue()).decode()})
    assert too_long.status_code == 422 and "at most 200,000" in too_long.text
    offline = {"prompt": "x", "override_settings": {"sd_model_checkpoint": "someone/not-downloaded"}}
    unavailable = httpx.post(f"{url}{SD}/txt2img", json=offline, timeout=60)  # the tests run offline
    assert unavailable.status_code == 409 and "not downloaded and Atelier is offline" in unavailable.text
    assert httpx.post(f"{url}{SD}/options", json={"sd_model_checkpoint": "nope"}).status_code == 404


def test_hires_fix_makes_the_larger_picture_and_writes_a1111s_fields(a1111) -> None:
    _, url = a1111
    payload = {"prompt": "a harbour", "seed": 4, "steps": 4, "width": 64, "height": 64, "enable_hr": True,
               "hr_scale": 2, "hr_upscaler": "Latent", "denoising_strength": 0.5, "hr_second_pass_steps": 2}
    done = httpx.post(f"{url}{SD}/txt2img", json=payload, timeout=120)
    assert done.status_code == 200, done.text
    assert decode(done.json()["images"][0]).size == (128, 128)
    info = json.loads(done.json()["info"])
    assert info["denoising_strength"] == 0.5
    text = info["infotexts"][0]
    assert "Size: 64x64" in text and "Hires upscale: 2.0" in text and "Hires upscaler: Latent" in text
    assert "Hires steps: 2" in text and "Denoising strength: 0.5" in text
    fields = httpx.post(f"{url}{SD}/png-info", json={"image": done.json()["images"][0]}, timeout=30).json()
    assert fields["parameters"]["Hires upscaler"] == "Latent"
    modes = [m["name"] for m in httpx.get(f"{url}{SD}/latent-upscale-modes", timeout=30).json()]
    assert modes[0] == "Latent" and "Latent (nearest-exact)" in modes
    zero = httpx.post(f"{url}{SD}/txt2img", json={**payload, "denoising_strength": 0.1}, timeout=30)
    assert zero.status_code == 422 and "at least one step" in zero.text


def test_extras_upscale_a_picture_with_a_real_upscaler(a1111) -> None:
    services, url = a1111
    names = [u["name"] for u in httpx.get(f"{url}{SD}/upscalers", timeout=30).json()]
    assert names[0] == "None" and {"Lanczos", "Nearest", "R-ESRGAN 4x+", "R-ESRGAN AnimeVideo 2x"} <= set(names)
    source = photo("chelsea").convert("RGB").resize((48, 32))
    payload = {"image": b64_png(source), "upscaling_resize": 2, "upscaler_1": "R-ESRGAN AnimeVideo 2x"}
    done = httpx.post(f"{url}{SD}/extra-single-image", json=payload, timeout=120)
    assert done.status_code == 200, done.text
    result = decode(done.json()["image"])
    assert result.size == (96, 64) and "Postprocess upscale by: 2.0" in done.json()["html_info"]
    assert services.gallery.page(limit=1)[0].recipe.pipeline == "upscale"
    batch = {**payload, "upscaler_1": "Lanczos", "imageList": [{"data": b64_png(source), "name": "a.png"}] * 2}
    del batch["image"]
    done = httpx.post(f"{url}{SD}/extra-batch-images", json=batch, timeout=120).json()
    assert [decode(i).size for i in done["images"]] == [(96, 64)] * 2
    for change, words in (({"upscaler_1": "R-ESRGAN 5x"}, "unknown model 'R-ESRGAN 5x'"),
                          ({"upscaling_resize": 17}, "at most 16"), ({"upscaling_resize": 0}, "at least 1"),
                          ({"gfpgan_visibility": 1}, "face restoration"), ({"upscaler_1": "None"}, "choose")):
        refused = httpx.post(f"{url}{SD}/extra-single-image", json={**payload, **change}, timeout=30)
        assert refused.status_code in (404, 422) and words in refused.text, refused.text
