"""A1111's `parameters` fields as text-to-image settings: what Reuse settings and PNG Info restore."""

from __future__ import annotations

from pipelines.text_to_image import TextToImageParams
from studio.gallery.metadata import parse_parameters
from studio.ui.png_info import a1111_settings

TEXT = ("a (tiled:1.2) floor, [marble:granite:0.5]\nNegative prompt: seams\nSteps: 12, Sampler: Euler a, "
        "CFG scale: 6, Seed: 5, Size: 64x64, Model: floor, Variation seed: 77, Variation seed strength: 0.3, "
        "Seed resize from: 96x64, Tiling: True")


def test_tiling_and_the_prompts_syntax_come_back() -> None:
    settings = a1111_settings(parse_parameters(TEXT), TextToImageParams, ["floor.safetensors"])
    assert settings.params["tiling"] is True
    assert settings.params["prompt"] == "a (tiled:1.2) floor, [marble:granite:0.5]"
    assert settings.model == "floor.safetensors" and settings.seed == 5 and not settings.notes
    assert (settings.params["subseed"], settings.params["subseed_strength"]) == (77, 0.3)
    assert (settings.params["seed_resize_from_w"], settings.params["seed_resize_from_h"]) == (96, 64)
    untiled = a1111_settings(parse_parameters(TEXT.replace(", Tiling: True", "")), TextToImageParams, [])
    assert "tiling" not in untiled.params  # absent in A1111's text: the user's own choice stays


def test_a1111s_styles_array_names_the_styles_and_a_malformed_one_is_said() -> None:
    text = 'a cat, dark, moody lighting\nSteps: 2, Seed: 1, Styles array: "[\\"moody\\", \\"b, c\\"]"'
    assert a1111_settings(parse_parameters(text), TextToImageParams, []).styles == ["moody", "b, c"]
    broken = a1111_settings(parse_parameters(text.replace("[", "{")), TextToImageParams, [])
    assert broken.styles == [] and any("Styles array" in note for note in broken.notes)
