"""The Gallery tab (search, open, favourite, reuse, delete), the Models tab, and the login page."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Locator, expect

from studio.accounts import LOCAL_USER
from studio.gallery import ArtworkNotFound
from studio.services import Services
from tests.conftest import make_config, wait_finished
from tests.e2e.conftest import ARTIFACTS, VIEWPORT
from tests.e2e.studio_page import StudioPage
from tests.support.model_trees import lora
from tests.ui.serving import serve_http


def make_art(services: Services, prompt: str, seed: int) -> str:
    job = services.generation.submit("text_to_image", "atelier-emoji-diffusion", {"prompt": prompt, "num_steps": 4},
                                     seed, owner=LOCAL_USER)
    done = wait_finished(services, job.id, timeout=120)
    assert done.status.value == "completed", done.error
    return done.image_ids[0]


def search(studio: StudioPage, words: str, found: int) -> None:
    """Type `words` in the Gallery's search box and press Enter: the page says `found` artworks."""
    studio.tab("gallery")
    box = studio.field("Search prompts and models")
    box.fill(words)
    box.press("Enter")
    expect(studio.panel.get_by_text(re.compile(rf"^Page \d+ of \d+ · {found} artwork"))).to_be_visible()


def test_search_open_favourite_and_reuse_an_artwork(studio_page: StudioPage, served) -> None:
    services, _ = served
    wanted = make_art(services, "a lighthouse at dusk", 4242)
    make_art(services, "a blue whale", 5)
    studio = studio_page
    search(studio, "lighthouse", 1)
    studio.block("Artworks").locator("img").first.click()
    expect(studio.field("Artwork id")).to_have_value(wanted)
    expect(studio.field("Parameters (A1111 format)")).to_have_value(re.compile("^a lighthouse at dusk"))

    studio.button("☆ Favourite").click()
    expect(studio.button("★ Unfavourite")).to_be_visible()
    assert services.gallery.get(wanted).favourite
    studio.panel.get_by_label("Favourites only").check()
    expect(studio.panel.get_by_text(re.compile(r"· 1 artwork"))).to_be_visible()

    studio.button("Reuse settings").click()
    expect(studio.page.get_by_role("tab", name="Text to Image", exact=True)).to_have_attribute("aria-selected", "true")
    expect(studio.field("Prompt")).to_have_value("a lighthouse at dusk")
    expect(studio.field("Seed (-1: random)")).to_have_value("4242")


def test_delete_an_artwork(studio_page: StudioPage, served) -> None:
    services, _ = served
    doomed = make_art(services, "a paper boat", 9)
    studio = studio_page
    search(studio, "paper boat", 1)
    studio.block("Artworks").locator("img").first.click()
    expect(studio.field("Artwork id")).to_have_value(doomed)
    studio.button("Delete").click()
    expect(studio.panel.get_by_text(f"Deleted {doomed}.")).to_be_visible()
    expect(studio.panel.get_by_text(re.compile(r"· 0 artwork"))).to_be_visible()
    with pytest.raises(ArtworkNotFound):
        services.gallery.get(doomed)


def test_the_models_tab_lists_the_bundled_models_with_their_licences(studio_page: StudioPage) -> None:
    studio_page.tab("models")
    panel = studio_page.panel
    for model in ("atelier-emoji-diffusion", "atelier-emoji-gan", "atelier-emoji-vae", "dcgan-faces"):
        expect(panel.get_by_text(model, exact=True).first).to_be_visible()
    faces = panel.get_by_role("row").filter(has_text="dcgan-faces")
    expect(faces).to_contain_text(re.compile("non-commercial", re.IGNORECASE))


def test_the_models_tab_filters_the_library_by_kind_and_words_and_shows_previews(library_page: StudioPage,
                                                                                 served_library) -> None:
    studio = library_page.tab("models")

    def row(model: str) -> Locator:
        return studio.panel.get_by_role("row").filter(has_text=model)

    expect(row("dreamy.safetensors")).to_contain_text("Checkpoint")
    studio.choose("Kind", "LoRA")
    expect(row("dreamy.safetensors")).to_have_count(0)
    expect(row("styles/ink.safetensors")).to_contain_text("ink wash style · triggers: inkwash")
    expect(row("glow_xl.safetensors")).to_contain_text("SDXL")
    expect(row("loha_paper.safetensors")).to_be_visible()
    previews = studio.block("Previews")
    expect(previews.locator("img")).to_have_count(1)  # the one LoRA with a preview picture, served by Gradio
    expect(previews.locator("img").first).to_have_js_property("naturalWidth", 32)
    expect(previews).to_contain_text("styles/ink.safetensors")

    studio.fill("Search models", "ink")
    expect(row("glow_xl.safetensors")).to_have_count(0)
    expect(row("styles/ink.safetensors")).to_be_visible()
    expect(studio.panel.get_by_text(re.compile(r"^1 of \d+ models and files"))).to_be_visible()
    lora(served_library[0].config.models_dirs[0] / "models" / "Lora" / "more_ink.safetensors")
    studio.button("Rescan models").click()  # finds the new file and keeps the filter
    expect(row("more_ink.safetensors")).to_contain_text("LoRA")
    expect(studio.panel.get_by_text(re.compile(r"^2 of \d+ models and files"))).to_be_visible()
    expect(row("styles/ink.safetensors")).to_be_visible()
    expect(previews.locator("img")).to_have_count(1)


def test_the_login_page_refuses_a_wrong_password_and_admits_the_right_one(browser, tmp_path: Path) -> None:
    config = make_config(tmp_path / "data", plugins=(), auth="ana:correct horse")
    with serve_http(config) as (_, url):
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        try:
            page.goto(url)
            page.get_by_label("username").fill("ana")
            page.get_by_label("password").fill("wrong")
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_text(re.compile("incorrect", re.IGNORECASE))).to_be_visible()
            expect(page.get_by_role("tab", name="Gallery")).to_have_count(0)
            page.get_by_label("username").fill("ana")  # the page empties it after a refusal
            page.get_by_label("password").fill("correct horse")
            page.get_by_role("button", name="Login").click()
            expect(page.get_by_role("tab", name="Gallery")).to_be_visible(timeout=60_000)
        finally:
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=ARTIFACTS / "login.png")
            context.close()



def test_a_lora_card_adds_its_tag_to_the_prompt(library_page: StudioPage) -> None:
    studio = library_page.tab("text_to_image")
    studio.panel.get_by_text("LoRAs", exact=True).click()  # the picker's accordion
    card = studio.panel.locator("button.thumbnail-item").filter(has_text="glow_xl")
    expect(card).to_contain_text("SDXL · triggers: glowing")
    studio.fill("Prompt", "a lantern")
    card.click()
    expect(studio.field("Prompt")).to_have_value("a lantern <lora:glow_xl:1>")
    card.click()  # once only
    expect(studio.field("Prompt")).to_have_value("a lantern <lora:glow_xl:1>")
