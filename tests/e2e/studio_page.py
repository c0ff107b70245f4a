"""The studio as a person sees it in the browser: open a tab, fill controls by their labels, press buttons, wait
for what the page shows. Shared by the browser tests and the screenshot command."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Locator, Page, expect

TAB_NAMES = {"text_to_image": "Text to Image", "gan": "GAN", "vae": "VAE", "style_transfer": "Style Transfer",
             "upscale": "Upscale", "gallery": "Gallery", "models": "Models"}
JOB_TIMEOUT_MS = 120_000  # a job on the bundled models takes seconds; a cold model load on a busy CI machine more


class StudioPage:
    def __init__(self, page: Page, url: str) -> None:
        self.page = page
        self.url = url

    def open(self) -> StudioPage:
        self.page.goto(self.url)
        # the first tab: on a narrow screen the last ones fold into a menu
        expect(self.page.get_by_role("tab", name=TAB_NAMES["text_to_image"])).to_be_visible(timeout=60_000)
        return self

    # -- where things are ------------------------------------------------------------------------------
    @property
    def panel(self) -> Locator:
        """The open tab's content: controls of other tabs are in the page too, hidden."""
        return self.page.locator("[role=tabpanel]:visible")

    def tab(self, kind: str) -> StudioPage:
        self.page.get_by_role("tab", name=TAB_NAMES[kind], exact=True).click()
        expect(self.page.get_by_role("tab", name=TAB_NAMES[kind], exact=True)).to_have_attribute(
            "aria-selected", "true")
        return self

    def field(self, label: str) -> Locator:
        """A textbox, dropdown, number, or a slider's number box, by its label."""
        plain = self.panel.get_by_label(label, exact=True)
        return plain.or_(self.panel.get_by_label(f"number input for {label}", exact=True)).first

    def button(self, name: str) -> Locator:
        return self.panel.get_by_role("button", name=name, exact=True)

    @property
    def status(self) -> Locator:
        """The status line beside a generator's results ("Queued…", "Step 3 of 20", "Done: …")."""
        return self.panel.locator(".prose").filter(has_text=re.compile(r"^(Ready|Queued|Loading|Step|Done|Stop)"))

    # -- what a person does ----------------------------------------------------------------------------
    def fill(self, label: str, value: object) -> None:
        box = self.field(label)
        box.fill(str(value))
        box.press("Tab")  # a number box takes its value on blur

    def choose(self, label: str, option: str) -> None:
        box = self.panel.get_by_label(label, exact=True).first
        box.click()
        self.page.get_by_role("option", name=option, exact=True).click()

    def upload(self, label: str, path: Path) -> None:
        """Drop a file on the upload area labelled `label`."""
        self.block(label).locator("input[type=file]").set_input_files(str(path))

    def generate(self) -> None:
        self.button("Generate").click()

    def wait_done(self, timeout: float = JOB_TIMEOUT_MS) -> str:
        done = self.panel.get_by_text(re.compile(r"^Done: "))
        expect(done).to_be_visible(timeout=timeout)
        return done.inner_text()

    def block(self, label: str) -> Locator:
        """A component's box by the label on its corner (images, galleries, tables, uploads)."""
        tag = self.page.get_by_test_id("block-label").filter(has_text=re.compile(rf"^\s*{re.escape(label)}\s*$"))
        return self.panel.locator("div.block").filter(has=tag).last

    def result_images(self) -> Locator:
        return self.block("Results").locator("img")

    def error_text(self) -> str:
        """The message of the error toast Gradio shows."""
        toast = self.page.locator(".toast-body")
        expect(toast.first).to_be_visible(timeout=30_000)
        return toast.first.inner_text()
