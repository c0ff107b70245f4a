"""What an artist does without thinking: Ctrl+Enter, a model's own defaults, dropping a PNG to get its settings
back, the dark theme, and a phone's narrow screen."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.e2e.conftest import ARTIFACTS
from tests.e2e.studio_page import StudioPage
from tests.e2e.test_gallery_and_models import make_art


def test_ctrl_enter_generates_on_the_tab_on_screen(studio_page: StudioPage) -> None:
    studio_page.tab("text_to_image")
    studio_page.fill("Prompt", "a green leaf")
    studio_page.fill("Steps", 4)
    studio_page.field("Prompt").press("Control+Enter")
    assert "saved to the gallery" in studio_page.wait_done()
    expect(studio_page.result_images()).to_have_count(1)


def test_picking_a_model_sets_its_defaults(studio_page: StudioPage) -> None:
    studio_page.tab("text_to_image")
    studio_page.choose("Model", "stabilityai/sd-turbo")  # listed; nothing is downloaded until a job needs it
    expect(studio_page.field("Steps")).to_have_value("1")
    expect(studio_page.field("CFG scale")).to_have_value("0")
    expect(studio_page.field("Width")).to_have_value("512")


def test_dropping_an_atelier_png_on_any_tab_opens_its_settings(studio_page: StudioPage, served) -> None:
    services, _ = served
    artwork = services.gallery.get(make_art(services, "a castle in the clouds", 31))
    studio_page.tab("gan")
    studio_page.upload("Load settings from a PNG (Atelier or AUTOMATIC1111)", artwork.path)
    expect(studio_page.page.get_by_role("tab", name="Text to Image", exact=True)).to_have_attribute(
        "aria-selected", "true")
    expect(studio_page.field("Prompt")).to_have_value("a castle in the clouds")
    expect(studio_page.field("Seed (-1: random)")).to_have_value("31")


def test_the_theme_toggle_switches_to_dark_and_is_remembered(studio_page: StudioPage) -> None:
    page, body, dark = studio_page.page, studio_page.page.locator("body"), re.compile(r"\bdark\b")
    expect(body).not_to_have_class(dark)  # Chromium here prefers light
    page.locator("#theme-toggle").click()
    expect(body).to_have_class(dark)
    page.reload()
    expect(page.get_by_role("tab", name="Gallery")).to_be_visible(timeout=60_000)
    expect(body).to_have_class(dark)
    page.locator("#theme-toggle").click()
    expect(body).not_to_have_class(dark)


def test_a_phone_sized_screen_still_generates(browser, served) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    studio = StudioPage(context.new_page(), served[1]).open()
    try:
        studio.tab("text_to_image")
        studio.fill("Prompt", "a tiny boat")
        studio.fill("Steps", 4)
        studio.generate()
        studio.wait_done()
        expect(studio.result_images()).to_have_count(1)
        width = studio.page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390 + 1, f"the page is {width} px wide on a 390 px screen: it scrolls sideways"
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        studio.page.screenshot(path=ARTIFACTS / "phone.png", full_page=True)
        context.close()
