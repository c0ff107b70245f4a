"""Each generator tab as an artist uses it: fill the controls, Generate, watch the progress, see the picture, find
it in the gallery; and Stop during a long job."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect
from skimage import data as examples

from studio.accounts import LOCAL_USER
from studio.gallery import metadata
from studio.styles import Style
from tests.e2e.studio_page import StudioPage


def expect_gallery_total(studio: StudioPage, total: int) -> None:
    """The Gallery tab, refreshed, counts `total` artworks."""
    studio.tab("gallery")
    studio.button("Refresh").click()
    expect(studio.panel.get_by_text(re.compile(rf"^Page \d+ of \d+ · {total} artwork"))).to_be_visible()


def photo(tmp_path: Path) -> Path:
    path = tmp_path / "chelsea.png"
    Image.fromarray(examples.chelsea()).resize((150, 100)).save(path)
    return path


def test_text_to_image_shows_progress_then_the_picture_and_the_gallery_grows(studio_page: StudioPage, served) -> None:
    before = served[0].gallery.count()
    studio_page.tab("text_to_image")
    studio_page.fill("Prompt", "a red heart")
    studio_page.fill("Steps", 30)
    studio_page.generate()
    expect(studio_page.panel.get_by_text(re.compile(r"^Step \d+ of 30"))).to_be_visible(timeout=60_000)
    assert "saved to the gallery" in studio_page.wait_done()
    expect(studio_page.result_images()).to_have_count(1)
    expect_gallery_total(studio_page, before + 1)


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_a_sampling_tab_makes_pictures_on_its_default_model(studio_page: StudioPage, served, kind: str) -> None:
    before = served[0].gallery.count()
    studio_page.tab(kind)
    studio_page.fill("Seed (-1: random)", 7)
    studio_page.generate()
    assert "(seed 7)" in studio_page.wait_done()
    expect(studio_page.result_images().first).to_be_visible()
    made = studio_page.result_images().count()
    expect_gallery_total(studio_page, before + made)


def test_style_transfer_restyles_an_uploaded_photo(studio_page: StudioPage, served, tmp_path: Path) -> None:
    before = served[0].gallery.count()
    studio_page.tab("style_transfer")
    studio_page.upload("Photo", photo(tmp_path))
    studio_page.generate()
    studio_page.wait_done()
    expect(studio_page.result_images()).to_have_count(1)
    expect_gallery_total(studio_page, before + 1)


def test_stop_ends_a_long_job_and_keeps_nothing(studio_page: StudioPage, served) -> None:
    before = served[0].gallery.count()
    studio_page.tab("text_to_image")
    studio_page.fill("Prompt", "a slow sunset")
    studio_page.fill("Steps", 150)
    studio_page.fill("Batch count", 4)  # 600 steps in all: far from done when Stop is pressed
    studio_page.generate()
    expect(studio_page.panel.get_by_text(re.compile(r"^Step \d+ of \d+"))).to_be_visible(timeout=60_000)
    studio_page.button("Stop").click()
    expect(studio_page.panel.get_by_text("Stopped.", exact=True)).to_be_visible(timeout=60_000)
    expect_gallery_total(studio_page, before)


def test_a_bad_value_gets_a_readable_message_not_a_stack_trace(studio_page: StudioPage) -> None:
    studio_page.tab("text_to_image")
    studio_page.fill("Width", 12)  # not a multiple of 8
    studio_page.generate()
    message = studio_page.error_text()
    assert "width" in message.lower() and "Traceback" not in message
    # and in the status beside Generate
    expect(studio_page.panel.get_by_text(re.compile(r"^⚠ .*width", re.IGNORECASE))).to_be_visible()


def test_tiling_and_a_variation_seed_reach_the_recipe(studio_page: StudioPage, served) -> None:
    services = served[0]
    studio_page.tab("text_to_image")
    studio_page.fill("Prompt", "a (red:1.2) heart, [circle|square]")
    studio_page.fill("Steps", 4)
    studio_page.panel.get_by_label("Seamless tiling", exact=True).check()
    studio_page.fill("Variation seed", 5)
    studio_page.fill("Variation strength", 0.5)
    studio_page.generate()
    assert "saved to the gallery" in studio_page.wait_done()
    newest = services.gallery.page(limit=1)[0]
    params = newest.recipe.params
    assert (params["tiling"], params["subseed"], params["subseed_strength"]) == (True, 5, 0.5)
    assert params["prompt"] == "a (red:1.2) heart, [circle|square]"
    text = metadata.format_parameters(newest.recipe)
    assert "Variation seed: 5, Variation seed strength: 0.5" in text and "Tiling: True" in text


def test_a_lora_an_embedding_a_style_and_a_wildcard_make_a_picture_that_reuse_restores(sd_page: StudioPage,
                                                                                      served_sd) -> None:
    services = served_sd[0]
    services.styles.save(LOCAL_USER, Style("moody", "dark, moody lighting", "bright"))
    studio = sd_page.tab("text_to_image")
    studio.page.reload()  # the Styles list is filled for the user on page load
    studio.open().tab("text_to_image")
    studio.choose("Model", "tiny-sd")
    studio.fill("Prompt", "a (cat:1.2) paperstyle in __colors__")
    studio.panel.get_by_text("LoRAs", exact=True).click()
    studio.panel.locator("button.thumbnail-item").filter(has_text="ink").click()
    expect(studio.field("Prompt")).to_have_value("a (cat:1.2) paperstyle in __colors__ <lora:ink:1>")
    studio.choose("Styles", "moody")
    for label, value in (("Steps", 2), ("Width", 64), ("Height", 64)):
        studio.fill(label, value)
    studio.generate()
    assert "saved to the gallery" in studio.wait_done()
    newest = services.gallery.page(limit=1)[0]
    drawn = newest.recipe.params["prompt"]
    assert re.fullmatch(r"a \(cat:1\.2\) paperstyle in (red|green|blue) <lora:ink:1>, dark, moody lighting", drawn)
    text = metadata.format_parameters(newest.recipe)
    assert 'Lora hashes: "ink: ' in text and 'TI hashes: "paperstyle: ' in text and "Styles array" in text
    assert "Template: " in text

    studio.tab("gallery")
    studio.button("Refresh").click()
    expect(studio.panel.get_by_text(re.compile(r"· 1 artwork"))).to_be_visible()
    studio.block("Artworks").locator("img").first.click()
    expect(studio.field("Artwork id")).to_have_value(newest.id)
    studio.button("Reuse settings").click()
    expect(studio.field("Prompt")).to_have_value(drawn.removesuffix(", dark, moody lighting"))
    expect(studio.panel.get_by_label("Styles", exact=True).first).to_be_visible()
    expect(studio.panel.locator(".token").filter(has_text="moody")).to_be_visible()  # the style chosen again


def test_hires_fix_makes_the_larger_picture_and_writes_a1111s_fields(studio_page: StudioPage, served) -> None:
    services = served[0]
    studio_page.tab("text_to_image")
    studio_page.fill("Prompt", "a yellow star")
    studio_page.fill("Steps", 4)
    studio_page.panel.get_by_label("Hires fix", exact=True).check()
    studio_page.fill("Hires steps", 4)
    studio_page.generate()
    assert "saved to the gallery" in studio_page.wait_done()
    newest = services.gallery.page(limit=1)[0]
    assert newest.recipe.params["enable_hr"] and (newest.width, newest.height) == (128, 128)  # ×2 of 64²
    text = metadata.format_parameters(newest.recipe)
    assert "Hires upscale: 2.0" in text and "Hires upscaler: Latent" in text and "Hires steps: 4" in text
