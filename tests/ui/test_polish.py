"""The artist's shortcuts on the generator tabs, through the served app: model defaults, presets, recent prompts, the
last seed, settings from a dropped PNG, the time left, and the browser-side keyboard shortcut and theme toggle."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gradio_client import Client, handle_file
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from pipelines.model_sources import diffusers_models
from pipelines.models import Library
from pipelines.text_to_image import TextToImageParams
from studio.services import Services
from studio.ui.presets import usable_settings
from studio.ui.progress import StepClock, step_text
from tests.conftest import make_config, wait_for
from tests.ui.serving import serve_http

pytestmark = pytest.mark.slow
A1111_TEXT = ("a castle on a hill, golden hour\nNegative prompt: blurry, lowres\nSteps: 28, Sampler: DPM++ 2M, "
              "Schedule type: Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, Model hash: abcdef1234, "
              "Model: atelier-emoji-diffusion, Denoising strength: 0.4, Hires upscale: 2, Version: v1.10.1")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, Client, str]]:
    with serve_http(make_config(tmp_path_factory.mktemp("polish") / "data")) as (services, url):
        yield services, Client(url, verbose=False), url


def skipped(value: Any) -> bool:
    """An output the event left alone (gr.skip())."""
    return isinstance(value, dict) and value.get("__type__") == "update" and "value" not in value


def endpoints(client: Client) -> dict[str, Any]:
    return client.view_api(print_info=False, return_format="dict")["named_endpoints"]


def control_names(client: Client, kind: str) -> list[str]:
    """The tab's controls in order, as its Generate endpoint names them (after model and seed)."""
    return [p["parameter_name"] for p in endpoints(client)[f"/generate_{kind}"]["parameters"]]


def filled(client: Client, kind: str, outputs: Any) -> dict[str, Any]:
    """name → value of the tab's param controls that an event set (model defaults and presets leave the Styles
    picker, which is no param, alone)."""
    names = [name for name in control_names(client, kind)[2:] if name != "styles"]
    return {name: value for name, value in zip(names, outputs, strict=True) if not skipped(value)}


def tabs_filled(services: Services, client: Client, outputs: tuple[Any, ...]) -> dict[str, dict[str, Any]]:
    """What a settings event ("Reuse settings", a dropped PNG) set on each tab: its model, seed and controls, then
    its status (the event's outputs, after the Tabs the client leaves out)."""
    kinds = [k for k in services.catalog.kinds if f"/generate_{k}" in endpoints(client)]
    rest, result = list(outputs), {}
    for kind in kinds:
        names = control_names(client, kind)
        chunk, rest = rest[:len(names)], rest[len(names):]
        result[kind] = {name: value for name, value in zip(names, chunk, strict=True) if not skipped(value)}
    for kind, status in zip(kinds, rest[:len(kinds)], strict=True):
        if not skipped(status):
            result[kind]["status"] = status
    return result


def generate(client: Client, prompt: str, seed: int = -1, **params: object) -> str:
    status, _, _, job_id = client.predict(model="pattern-v1", seed=seed, prompt=prompt, **params,
                                          api_name="/generate_pattern")
    assert status.startswith("Done"), status
    return job_id


def test_a_models_defaults_fill_their_controls_when_picked_and_when_the_tab_opens(served) -> None:
    _, client, _ = served
    picked = {model: filled(client, "text_to_image", client.predict(model, api_name="/model_defaults_text_to_image"))
              for model in ("stabilityai/sd-turbo", "stable-diffusion-v1-5/stable-diffusion-v1-5",
                            "stabilityai/stable-diffusion-xl-base-1.0", "atelier-emoji-diffusion")}
    turbo, sd15, sdxl, bundled = picked.values()
    assert turbo == {"width": 512, "height": 512, "num_steps": 1, "cfg_scale": 0.0, "sampler": "Automatic"}
    assert sd15 == {"width": 512, "height": 512, "num_steps": 25, "cfg_scale": 7.0}
    assert sdxl == {"width": 1024, "height": 1024, "num_steps": 30, "cfg_scale": 6.0}
    assert bundled == {"width": 64, "height": 64, "num_steps": 20, "cfg_scale": 7.0, "sampler": "Euler a"}
    assert filled(client, "pattern", client.predict("pattern-v1", api_name="/model_defaults_pattern")) == {}
    assert filled(client, "text_to_image", client.predict("no/such-model", api_name="/model_defaults_text_to_image")
                  ) == {}
    initial = {p["parameter_name"]: p["parameter_default"]
               for p in endpoints(client)["/generate_text_to_image"]["parameters"]}
    assert initial["model"] == "atelier-emoji-diffusion"  # the tab's default model, with its own settings
    assert (initial["width"], initial["height"], initial["num_steps"], initial["cfg_scale"]) == (64, 64, 20, 7.0)


def test_a_model_folder_names_its_own_defaults_and_stray_ones_are_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "atelier.json").write_text(json.dumps({"defaults": {"width": 768, "height": 512, "num_steps": "many",
                                                                  "sampler": "Warp drive", "no_such_field": 1}}))
    library = Library([tmp_path], bundled=None)
    library.scan()
    (entry,) = [m for m in diffusers_models(library) if m.id == "my-model"]
    assert entry.defaults["width"] == 768
    assert usable_settings(TextToImageParams, entry.defaults, "test") == {"width": 768, "height": 512}


def test_built_in_and_saved_presets_fill_their_controls(served) -> None:
    services, client, _ = served
    draft = client.predict("Draft (fast): 10 steps, 1 image", api_name="/apply_preset_text_to_image")
    assert filled(client, "text_to_image", draft) == {"num_steps": 10, "batch_size": 1, "batch_count": 1}

    settings = {"width": 32, "height": 40, "num_images": 2, "num_steps": 3, "step_delay": 0.0, "palette": "cool",
                "crash": False, "fail": ""}
    saved = client.predict(name="  Cool sketch  ", **settings, api_name="/save_preset_pattern")
    assert saved == "Cool sketch" or saved.get("value") == "Cool sketch"  # chosen in the list once saved
    assert services.presets.names("local", "pattern") == ["Cool sketch"]
    assert filled(client, "pattern", client.predict("Cool sketch", api_name="/apply_preset_pattern")) == settings
    client.predict(name="Cool sketch", **{**settings, "num_steps": 5}, api_name="/save_preset_pattern")
    assert services.presets.get("local", "pattern", "Cool sketch")["num_steps"] == 5  # saved again: replaced

    with pytest.raises(Exception, match="is the name of a built-in preset"):
        client.predict(name="Detailed: 40 steps, 1 image", api_name="/save_preset_text_to_image")
    with pytest.raises(Exception, match="give the preset a name"):
        client.predict(name=" ", api_name="/save_preset_pattern")
    with pytest.raises(Exception, match="only your own presets can be deleted"):
        client.predict("Balanced: 20 steps, 2 images", api_name="/delete_preset_text_to_image")
    client.predict("Cool sketch", api_name="/delete_preset_pattern")
    assert services.presets.names("local", "pattern") == []
    with pytest.raises(Exception, match="no saved preset named 'Cool sketch'"):
        client.predict("Cool sketch", api_name="/apply_preset_pattern")


def test_recent_prompts_come_from_the_gallery_newest_first_once_each(served) -> None:
    services, client, _ = served
    for prompt in ("a red fox", "a blue whale\nin deep water", "a red fox"):
        generate(client, prompt)
    assert services.gallery.recent_prompts("local", "pattern")[:2] == ["a red fox", "a blue whale\nin deep water"]
    listed = client.predict(api_name="/prompt_history_pattern")  # what the tab runs after each generation
    choices = [value for _, value in listed["choices"]]
    assert choices[:2] == ["a red fox", "a blue whale\nin deep water"] and choices.count("a red fox") == 1
    assert listed["choices"][1][0] == "a blue whale in deep water"  # one line in the list
    whale = "a blue whale\nin deep water"
    assert client.predict(whale, api_name="/use_prompt_pattern") == whale


def test_last_seed_is_the_seed_the_tabs_last_job_ran_with(served) -> None:
    services, client, _ = served
    job_id = generate(client, "a random seed", seed=-1)
    seed = client.predict(job_id, api_name="/last_seed_pattern")
    assert seed == services.queue.get(job_id).spec.seed == services.gallery.by_job(job_id)[0].recipe.seed
    with pytest.raises(Exception, match="nothing has been generated from this tab yet"):
        client.predict("", api_name="/last_seed_pattern")
    with pytest.raises(Exception, match="no job"):
        client.predict("job-that-never-was", api_name="/last_seed_pattern")


def test_an_atelier_png_fills_its_own_tab_from_any_tab(served) -> None:
    services, client, _ = served
    job_id = generate(client, "a teal kite", seed=42, palette="cool", num_steps=3, width=48)
    png = services.gallery.by_job(job_id)[0].path
    outputs = client.predict(handle_file(str(png)), api_name="/png_settings_text_to_image")
    tabs = tabs_filled(services, client, outputs[:-1])
    pattern = tabs.pop("pattern")
    assert pattern.pop("status").startswith("Settings loaded from an Atelier PNG (pattern, seed 42)")
    assert pattern == {"model": "pattern-v1", "seed": 42, "prompt": "a teal kite", "width": 48, "height": 64,
                       "num_images": 1, "num_steps": 3, "step_delay": 0.0, "palette": "cool", "crash": False,
                       "fail": ""}
    assert all(not changed for changed in tabs.values())  # the other tabs are left alone
    assert outputs[-1] is None  # the drop zone is cleared for the next PNG


def test_an_a1111_png_fills_the_text_to_image_tab(served, tmp_path: Path) -> None:
    services, client, _ = served
    info = PngInfo()
    info.add_text("parameters", A1111_TEXT)
    Image.new("RGB", (16, 16), "white").save(tmp_path / "a1111.png", pnginfo=info)
    outputs = client.predict(handle_file(str(tmp_path / "a1111.png")), api_name="/png_settings_pattern")
    tabs = tabs_filled(services, client, outputs[:-1])
    t2i = tabs["text_to_image"]
    status = t2i.pop("status")
    assert status == "Settings loaded from an AUTOMATIC1111 PNG."  # every field is used
    assert t2i.pop("init_image") is None  # a txt2img PNG: no picture to start from
    assert t2i == {"model": "atelier-emoji-diffusion", "seed": 1234567, "prompt": "a castle on a hill, golden hour",
                   "negative_prompt": "blurry, lowres", "num_steps": 28, "sampler": "DPM++ 2M Karras",
                   "cfg_scale": 6.5, "width": 512, "height": 768, "clip_skip": 1, "strength": 0.4,
                   "enable_hr": True, "hr_scale": 2.0,
                   "styles": []}  # made without styles: the tab's chosen styles are cleared, not added to it
    assert tabs["pattern"] == {}


def test_a_png_without_settings_or_past_the_limits_gets_a_clear_message(served, tmp_path: Path) -> None:
    _, client, _ = served
    Image.new("RGB", (8, 8), "red").save(tmp_path / "plain.png")
    with pytest.raises(Exception, match="this PNG holds no generation settings: it has neither an Atelier recipe nor "
                                        "AUTOMATIC1111 parameters"):
        client.predict(handle_file(str(tmp_path / "plain.png")), api_name="/png_settings_text_to_image")
    Image.new("RGB", (8, 8), "red").save(tmp_path / "photo.png", format="JPEG")
    with pytest.raises(Exception, match=r"this is not a readable PNG file \(no PNG signature at its start\)"):
        client.predict(handle_file(str(tmp_path / "photo.png")), api_name="/png_settings_text_to_image")
    info = PngInfo()
    info.add_text("parameters", "x" * 200_001)
    Image.new("1", (8, 8)).save(tmp_path / "long.png", pnginfo=info)
    with pytest.raises(Exception, match="at most 200,000 are read"):
        client.predict(handle_file(str(tmp_path / "long.png")), api_name="/png_settings_text_to_image")


def test_the_status_tells_the_time_left_and_the_place_in_the_queue(served) -> None:
    _, client, _ = served
    running = client.submit(model="pattern-v1", seed=1, num_steps=16, step_delay=0.08, api_name="/generate_pattern")
    wait_for(lambda: any(o[0].startswith("Step") for o in running.outputs()), what="the first job to start")
    next_up = client.submit(model="pattern-v1", seed=2, num_steps=2, api_name="/generate_pattern")
    wait_for(lambda: next_up.outputs(), what="the second job to be queued")
    last = client.submit(model="pattern-v1", seed=3, num_steps=2, api_name="/generate_pattern")
    wait_for(lambda: running.done() and next_up.done() and last.done(), what="the three jobs")
    statuses = [outputs[0] for outputs in running.outputs()]
    assert any(re.fullmatch(r"Step \d+ of 16 · about \d+ s left", s) for s in statuses), statuses
    assert "Step 16 of 16" in statuses  # nothing left to estimate at the end
    assert next_up.outputs()[0][0] == "Queued: next to run"
    assert last.outputs()[0][0] == "Queued: 1 job(s) ahead"


def test_time_left_follows_the_pace_of_the_steps() -> None:
    now = iter([0.0, 2.0, 4.0, 5.0, 100.0, 100.5])
    clock = StepClock(lambda: next(now))
    assert clock.left(1, 20) is None  # the first step carries the model load: not a sample
    assert clock.left(2, 20) == 18 * 2.0 and clock.left(3, 20) == 17 * 2.0  # 2 s a step so far
    assert clock.left(20, 20) is None  # done
    assert clock.left(1, 20) is None and clock.left(2, 20) == 18 * 0.5  # run again: starts over
    assert step_text(5, 20, 12.4) == "Step 5 of 20 · about 12 s left"
    assert step_text(5, 200, 400.0) == "Step 5 of 200 · about 7 min left"


def test_the_page_carries_the_keyboard_shortcut_and_the_theme_toggle(served) -> None:
    _, client, url = served
    page = httpx.get(url).text
    for elem_id in ("generate-text_to_image", "generate-pattern", "theme-toggle"):
        assert f'"elem_id":"{elem_id}"' in page.replace(" ", "")
    config = client.config
    by_id = {c["id"]: c for c in config["components"]}
    scripts = {dep.get("api_name"): dep.get("js") or "" for dep in config["dependencies"]}
    setup = scripts["browser_setup"]
    assert "event.ctrlKey || event.metaKey" in setup and '[id^="generate-"]' in setup and ".click()" in setup
    assert 'searchParams.get("__theme")' in setup and 'localStorage.getItem("atelier-theme")' in setup
    toggle = next(dep for dep in config["dependencies"] if dep.get("api_name") == "toggle_theme")
    assert by_id[toggle["targets"][0][0]]["props"]["elem_id"] == "theme-toggle"
    assert 'document.body.classList.toggle("dark")' in toggle["js"] and "localStorage.setItem" in toggle["js"]
