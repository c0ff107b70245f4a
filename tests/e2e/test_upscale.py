"""The Upscale tab from the gallery: an artwork's Upscale button opens the tab with it, RealESRGAN ×4 makes the
larger picture, and the result lands in the gallery with a recipe that names its source."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.studio_page import StudioPage
from tests.e2e.test_gallery_and_models import make_art


def test_an_artwork_upscaled_x4_with_realesrgan_lands_in_the_gallery(studio_page: StudioPage, served) -> None:
    services, _ = served
    source = make_art(services, "a small red kite", 77)
    studio = studio_page
    studio.tab("gallery")
    studio.button("Refresh").click()
    box = studio.field("Search prompts and models")
    box.fill("kite")
    box.press("Enter")
    studio.block("Artworks").locator("img").first.click()
    expect(studio.field("Artwork id")).to_have_value(source)
    studio.button("Upscale").click()
    expect(studio.page.get_by_role("tab", name="Upscale", exact=True)).to_have_attribute("aria-selected", "true")
    expect(studio.panel.get_by_text(re.compile(f"Artwork {re.escape(source)} is ready to upscale"))).to_be_visible()
    studio.choose("Model", "R-ESRGAN 4x+")
    studio.fill("Scale by", 4)
    studio.generate()
    assert "saved to the gallery" in studio.wait_done()
    newest = services.gallery.page(limit=1)[0]
    original = services.gallery.get(source)
    assert newest.recipe.pipeline == "upscale" and newest.recipe.model == "R-ESRGAN 4x+"
    assert newest.recipe.params["source_artwork"] == source
    assert (newest.width, newest.height) == (original.width * 4, original.height * 4)
