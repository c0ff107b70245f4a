"""Widgets from a pipeline's Params description, and the two-way mapping between widget values and params.

Most fields get one control each (type, default, range and label from Params.describe()). An image field
becomes an upload; an image field with a mask painted on it becomes one image editor that fills both.
Uploaded pictures go through the InputStore (checked, stored by content) and params hold their reference.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

import gradio as gr
import numpy as np
from PIL import Image

from studio.gallery.inputs import InputStore, check_format
from studio.ui.tabs.pickers import build_picker, wire_picker


@dataclass
class Binding:
    """One control and the params it sets: a plain value, an image, or an image with a painted mask."""

    component: gr.components.Component
    names: tuple[str, ...]
    kind: Literal["value", "image", "editor"] = "value"

    def to_params(self, value: Any, store: InputStore, owner: str) -> dict[str, Any]:
        """The params this control's value stands for; a picture is stored as `owner`'s input first."""
        if self.kind == "value":
            return {self.names[0]: value}
        if self.kind == "image":
            return {self.names[0]: store.put(value, field=self.names[0], owner=owner) if value is not None else ""}
        image_name, mask_name = self.names
        background, mask = _split_editor(value)
        return {image_name: store.put(background, field=image_name, owner=owner) if background is not None else "",
                mask_name: store.put(mask, field=mask_name, owner=owner) if mask is not None else ""}

    def from_params(self, params: dict[str, Any], store: InputStore) -> Any:
        """The control's value that reproduces `params` ("Reuse settings"); gr.skip() for what is missing."""
        if self.kind == "value":
            return params.get(self.names[0], gr.skip())
        refs = [params.get(name, "") for name in self.names]
        if self.kind == "image":
            return str(store.path(refs[0])) if refs[0] else None
        if not refs[0]:
            return None
        layers = [_mask_layer(store.get(refs[1]))] if refs[1] else []
        return {"background": store.get(refs[0]), "layers": layers, "composite": None}


def build_bindings(specs: list[dict[str, Any]], name: str) -> list[Binding]:
    """Controls for every field, in order. Fields that matter only in some modes (the `modes` hint) sit in a
    column that the `mode` control shows and hides; `name` prefixes that event's api_name."""
    masks = {spec["paint_on"]: spec["name"] for spec in specs if spec["type"] == "mask"}
    default_mode = next((spec["default"] for spec in specs if spec["name"] == "mode"), None)
    bindings: list[Binding] = []
    toggles: list[tuple[tuple[str, ...], gr.Column]] = []
    for spec in specs:
        if spec["type"] == "mask":
            continue  # painted inside its image's editor
        modes = spec.get("modes")
        if modes and default_mode is not None:
            with gr.Column(visible=default_mode in modes, min_width=0) as column:
                bindings.append(_binding(spec, masks))
            toggles.append((tuple(modes), column))
        else:
            bindings.append(_binding(spec, masks))
    mode = next((b for b in bindings if b.names[0] == "mode"), None)
    if mode is not None and toggles:
        mode.component.change(lambda value: [gr.Column(visible=value in modes) for modes, _ in toggles],
                              inputs=[mode.component], outputs=[column for _, column in toggles],
                              api_name=f"show_fields_{name}", queue=False)
    return bindings


def _binding(spec: dict[str, Any], masks: dict[str, str]) -> Binding:
    if spec["type"] == "image" and spec["name"] in masks:
        editor = gr.ImageEditor(label=f"{_label(spec)} — paint over the parts to repaint (inpaint)",
                                type="pil", layers=False, sources=("upload", "clipboard"),
                                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed"), height=360)
        _check_before_decoding(editor, spec["name"], lambda payload: _editor_files(editor, payload))
        return Binding(editor, (spec["name"], masks[spec["name"]]), "editor")
    if spec["type"] == "image":
        return Binding(_image_upload(spec["name"], _label(spec)), (spec["name"],), "image")
    if spec.get("thumbnails"):
        picker = build_picker(spec)  # pictures first, then the slider they set
        control = field_component(spec)
        wire_picker(picker, spec, control)
        return Binding(control, (spec["name"],))
    return Binding(field_component(spec), (spec["name"],))


def _image_upload(name: str, label: str) -> gr.Image:
    image = gr.Image(label=label, type="pil", height=300)
    _check_before_decoding(image, name, lambda payload: [_image_file(payload)])
    return image


def _check_before_decoding(component: gr.Image | gr.ImageEditor, name: str,
                           files: Callable[[Any], list[Path | IO[bytes] | None]]) -> None:
    """Make an upload whose files are of another format than PNG, JPEG or WebP (checked before Gradio decodes them:
    it opens any format Pillow knows, EPS through Ghostscript), or unreadable (truncated, a decompression bomb), fail
    with a message naming the field: Gradio alone fails inside, which tells an API client only "an exception
    occurred". The check wraps this instance's preprocess; a subclass would make Gradio write a .pyi stub beside this
    module at import."""
    preprocess = component.preprocess

    def checked(payload: Any) -> Any:
        try:
            for file in files(payload) if payload is not None else []:
                if file is not None:
                    check_format(file, name)
            return preprocess(payload)
        except ValueError as e:
            raise gr.Error(str(e)) from None
        except (OSError, Image.DecompressionBombError, SyntaxError) as e:  # PIL's UnidentifiedImageError is an OSError
            raise gr.Error(f"`{name}`: the upload is not a readable image ({type(e).__name__})") from None

    component.preprocess = checked  # type: ignore[method-assign]


def _image_file(data: Any) -> Path | IO[bytes] | None:
    """What Gradio will open for one image of a payload: an uploaded file, bytes, or a data: URL (which it decodes)."""
    if isinstance(data, (bytes, bytearray)):
        return io.BytesIO(data)
    if getattr(data, "path", None):
        return Path(data.path)
    url = getattr(data, "url", None) or ""
    return io.BytesIO(base64.b64decode(url.partition(",")[2])) if url.startswith("data:") else None


def _editor_files(editor: gr.ImageEditor, payload: Any) -> list[Path | IO[bytes] | None]:
    """Every picture of an ImageEditor payload: background, layers and composite, or those of a chunked upload."""
    if getattr(payload, "id", None) is not None:
        payload = editor.blob_storage.get(payload.id)
        if payload is None:
            return []
    return [_image_file(part) for part in (payload.background, *(payload.layers or []), payload.composite)]


def field_component(spec: dict[str, Any]) -> gr.components.Component:
    """One scalar Params field → one Gradio input."""
    label, info = _label(spec), spec.get("help") or None
    kind, default = spec["type"], spec["default"]
    if kind == "choice":
        return gr.Dropdown(choices=spec["choices"], value=default, label=label, info=info)
    if kind == "bool":
        return gr.Checkbox(value=default, label=label, info=info)
    if kind in ("int", "float"):
        low, high = spec.get("minimum"), spec.get("maximum")
        step = spec.get("step") or (1 if kind == "int" else None)
        if low is not None and high is not None:
            return gr.Slider(minimum=low, maximum=high, value=default, step=step, label=label, info=info)
        return gr.Number(value=default, label=label, info=info, precision=0 if kind == "int" else None)
    if kind == "str":
        lines = 3 if spec.get("multiline") or spec["name"].endswith("prompt") else 1
        return gr.Textbox(value=default, label=label, info=info, lines=lines)
    return gr.JSON(value=default, label=label)


def _label(spec: dict[str, Any]) -> str:
    return spec.get("label") or spec["name"].replace("_", " ").capitalize()


def _split_editor(value: dict[str, Any] | None) -> tuple[Image.Image | None, Image.Image | None]:
    """(background, mask) of an ImageEditor value: the mask is white where any stroke was painted."""
    if not value or value.get("background") is None:
        return None, None
    background = value["background"]
    painted = None
    for layer in value.get("layers") or []:
        if layer is None:
            continue
        alpha = np.asarray(layer.convert("RGBA"))[..., 3] > 0  # (H, W)
        painted = alpha if painted is None else painted | alpha
    if painted is None or not painted.any():
        return background, None
    return background, Image.fromarray((painted * 255).astype(np.uint8), mode="L")


def _mask_layer(mask: Image.Image) -> Image.Image:
    """A stored mask shown again as white paint on a transparent layer."""
    alpha = mask.convert("L")
    layer = Image.new("RGBA", alpha.size, (255, 255, 255, 0))
    layer.putalpha(alpha)
    return layer
