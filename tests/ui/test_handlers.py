"""Handlers without a browser: what a user's request may reach of another user's work."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from PIL import Image

from studio.gallery.metadata import png_info
from studio.services import Services
from studio.ui.handlers import Handlers
from tests.gallery.conftest import make_recipe, noise


def test_a_dropped_png_brings_only_the_dropping_users_own_input_pictures(studio: Services, tmp_path: Path) -> None:
    ref = studio.inputs.put(Image.new("RGB", (8, 8), (1, 2, 3)), owner="ann")
    model = studio.catalog.default_model("style_transfer").id
    recipe = make_recipe(pipeline="style_transfer", model=model, owner="ann", params={"content_image": ref})
    noise().save(tmp_path / "ann.png", pnginfo=png_info(recipe))  # ann's artwork, passed on to bob
    handlers = Handlers(studio)
    assert handlers.png_settings(str(tmp_path / "ann.png"), SimpleNamespace(username="ann")).params == {
        "content_image": ref}
    # once, bob's tab showed ann's photo (served from the inputs folder) and his job could use it
    with pytest.raises(gr.Error, match="`content_image` is required"):
        handlers.png_settings(str(tmp_path / "ann.png"), SimpleNamespace(username="bob"))
