"""The Style Transfer tab's picker: the 26 built-in styles as thumbnails; a click sets the style slider.

The thumbnails are rendered once by `python -m pipelines.train.style_thumbnails` and ship in assets/styles.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

STYLE_THUMBNAILS = Path(__file__).resolve().parents[3] / "assets" / "styles"


def style_thumbnails() -> list[Path]:
    return sorted(STYLE_THUMBNAILS.glob("style_*.webp"))


def build_style_picker() -> gr.Gallery:
    items = [(str(path), f"Style {number}") for number, path in enumerate(style_thumbnails(), start=1)]
    return gr.Gallery(value=items, label="Built-in styles (click one to pick it)", columns=9, height=220,
                      allow_preview=False, object_fit="cover")


def wire_style_picker(picker: gr.Gallery, style: gr.components.Component) -> None:
    def pick(evt: gr.SelectData) -> int:
        return evt.index + 1

    picker.select(pick, outputs=[style], api_name="pick_style")
