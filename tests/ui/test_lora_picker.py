"""The LoRA picker's cards: the library's LoRAs by the name their tag uses, with previews and trigger words."""

from __future__ import annotations

from pathlib import Path

from studio.ui.tabs.networks import lora_cards, with_tag
from tests.conftest import make_config
from tests.support.model_trees import a1111_tree, comfyui_tree


def test_cards_name_each_lora_as_its_tag_does(tmp_path: Path) -> None:
    from studio.services import build_services
    from studio.ui.handlers import Handlers

    a1111_tree(tmp_path / "webui")
    comfyui_tree(tmp_path / "ComfyUI")
    services = build_services(make_config(tmp_path / "data", plugins=(),
                                          models_dirs=(tmp_path / "webui", tmp_path / "ComfyUI")))
    try:
        cards = lora_cards(Handlers(services))
    finally:
        services.stop()
    captions = [caption for _, caption in cards]
    assert "glow_xl · SDXL · triggers: glowing" in captions
    assert {c.split(" · ")[0] for c in captions if "ink" in c} == {  # two files named ink: told apart by id
        "a1111:styles/ink.safetensors", "comfyui:styles/ink.safetensors"}
    ink = next(picture for picture, caption in cards if caption.startswith("a1111:styles/ink"))
    assert ink.size == (32, 24)  # its preview; a LoRA without one gets a plain card
    assert with_tag("a cat", "glow_xl · SDXL") == "a cat <lora:glow_xl:1>"
    assert with_tag("a cat <lora:glow_xl:1>", "glow_xl · SDXL") == "a cat <lora:glow_xl:1>"
    assert with_tag("", "glow_xl") == "<lora:glow_xl:1>"
