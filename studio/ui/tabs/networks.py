"""The LoRA picker of a generator tab whose prompts take `<lora:…>` tags: the model library's LoRAs as cards
(preview, name, family, trigger words); clicking one adds its tag to the prompt, as A1111's extra-network cards do."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import gradio as gr
from PIL import Image

from pipelines.models import ModelFile, kinds

if TYPE_CHECKING:
    from studio.ui.handlers import Handlers

MAX_CARDS = 200
SEPARATOR = " · "
NO_PREVIEW = (72, 72, 84)  # the card of a LoRA without a preview picture


def lora_cards(handlers: Handlers) -> list[tuple[Image.Image, str]]:
    """A card per usable LoRA: its preview (or a plain one) and a caption that starts with the name its tag uses
    (the file name alone, or the library id when two files share it)."""
    files = [f for f in handlers.services.catalog.files(kinds.LORA) if not f.problem][:MAX_CARDS]
    names = Counter(f.name for f in files)
    thumbnails = handlers.model_library.thumbnails
    cards = []
    for f in files:
        picture = thumbnails.get(f.preview) if f.preview is not None else None
        cards.append((picture or Image.new("RGB", (96, 96), NO_PREVIEW), _caption(f, names)))
    return cards


def _caption(file: ModelFile, names: Counter[str]) -> str:
    parts = [file.name if names[file.name] == 1 else file.id, kinds.FAMILIES.get(file.family, "")]
    if file.triggers:
        parts.append("triggers: " + ", ".join(file.triggers[:5]))
    return SEPARATOR.join(p for p in parts if p)


def with_tag(prompt: str, caption: str) -> str:
    """The prompt with the card's tag at its end (once: a second click does not add it again)."""
    name = caption.split(SEPARATOR)[0].strip()
    tag = f"<lora:{name}:1>"
    if not name or tag in prompt:
        return prompt
    return f"{prompt.rstrip()} {tag}".strip()


def build_lora_picker(kind: str, prompt: gr.Textbox, handlers: Handlers) -> None:
    with gr.Accordion("LoRAs", open=False):
        cards = gr.Gallery(value=lambda: lora_cards(handlers), label="Click a LoRA to add its tag to the prompt",
                           columns=6, height=240, allow_preview=False, object_fit="cover")

    def add(event: gr.SelectData, text: str) -> str:
        value = event.value if isinstance(event.value, dict) else {}
        return with_tag(text or "", str(value.get("caption") or ""))

    cards.select(add, inputs=[prompt], outputs=[prompt], api_name=f"add_lora_{kind}", show_progress="hidden")
