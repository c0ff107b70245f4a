"""`python -m tests.e2e.screenshots`: the README's pictures of every tab, taken in the browser the tests drive.

It serves the studio on the bundled models in a temporary data dir, makes an artwork on each generator tab the way
a person would (fill, Generate, wait), and saves each tab at 1280×800 to docs/screenshots/<tab>.png; then the
text-to-image tab at a phone's width and in the dark theme.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from tests.conftest import make_config
from tests.e2e.browser import chromium
from tests.e2e.studio_page import StudioPage
from tests.e2e.test_generators import photo
from tests.ui.serving import serve_http

OUT = Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots"
DESKTOP, PHONE = {"width": 1280, "height": 800}, {"width": 390, "height": 844}


def take(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []

    def shot(studio: StudioPage, name: str) -> None:
        studio.page.mouse.move(0, 0)  # no hover highlight in the picture
        path = out / f"{name}.png"
        studio.page.screenshot(path=path)
        saved.append(path)

    with tempfile.TemporaryDirectory(prefix="atelier-screenshots-") as tmp, \
            serve_http(make_config(Path(tmp) / "data", plugins=())) as (_, url), chromium() as browser:
        context = browser.new_context(viewport=DESKTOP)
        studio = StudioPage(context.new_page(), url).open()

        studio.tab("text_to_image")
        studio.fill("Prompt", "a smiling sun")
        studio.fill("Batch size", 4)
        studio.fill("Seed (-1: random)", 11)
        studio.generate()
        studio.wait_done()
        shot(studio, "text_to_image")

        for kind in ("gan", "vae"):
            studio.tab(kind)
            studio.fill("Seed (-1: random)", 3)
            studio.generate()
            studio.wait_done()
            shot(studio, kind)

        studio.tab("style_transfer")
        studio.upload("Photo", photo(Path(tmp)))
        studio.generate()
        studio.wait_done()
        shot(studio, "style_transfer")

        studio.tab("gallery")
        studio.button("Refresh").click()
        studio.block("Artworks").locator("img").first.click()
        studio.field("Parameters (A1111 format)").wait_for()
        studio.page.wait_for_timeout(500)  # the detail image fades in
        shot(studio, "gallery")

        studio.tab("models")
        shot(studio, "models")
        context.close()

        phone = browser.new_context(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True)
        shot(StudioPage(phone.new_page(), url).open().tab("text_to_image"), "phone")
        phone.close()

        dark = browser.new_context(viewport=DESKTOP)
        shot(StudioPage(dark.new_page(), f"{url}?__theme=dark").open().tab("gallery"), "dark")
        dark.close()
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNGs (default: docs/screenshots)")
    args = parser.parse_args()
    for path in take(args.out):
        print(path)  # noqa: T201


if __name__ == "__main__":
    main()
