"""Example photos that ship inside the scikit-image wheel (BSD licence): read as files, without importing it."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from PIL import Image


def photo_path(name: str) -> Path:
    """'astronaut' or 'chelsea' (the cat) → the PNG inside the installed scikit-image."""
    return Path(str(files("skimage.data") / f"{name}.png"))


def photo(name: str, size: int | None = None) -> Image.Image:
    with Image.open(photo_path(name)) as image:
        image = image.convert("RGB")
    if size:
        image.thumbnail((size, size))
    return image
