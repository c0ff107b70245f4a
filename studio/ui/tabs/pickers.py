"""Thumbnail pickers: a number param whose values have pictures (the 26 built-in styles) gets a gallery above
its slider; a click sets the slider. Which folder holds the pictures is the param's `thumbnails` hint."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

REPO_ROOT = Path(__file__).resolve().parents[3]


def thumbnails(folder: str) -> list[Path]:
    return sorted(p for p in (REPO_ROOT / folder).iterdir() if p.suffix.lower() in (".webp", ".png", ".jpg"))


def build_picker(spec: dict) -> gr.Gallery:
    """The gallery for one param; captions name the value each picture stands for."""
    first = int(spec.get("minimum", 0))
    label = spec.get("label") or spec["name"]
    items = [(str(path), str(first + i)) for i, path in enumerate(thumbnails(spec["thumbnails"]))]
    return gr.Gallery(value=items, label=f"{label}: click one to pick it", columns=9, height=220,
                      allow_preview=False, object_fit="cover")


def wire_picker(picker: gr.Gallery, spec: dict, control: gr.components.Component) -> None:
    first = int(spec.get("minimum", 0))

    def pick(evt: gr.SelectData) -> int:
        return first + evt.index

    picker.select(pick, outputs=[control], api_name=f"pick_{spec['name']}")
