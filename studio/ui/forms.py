"""Widgets from a pipeline's Params description: each field gets the control its type and hints ask for."""

from __future__ import annotations

from typing import Any

import gradio as gr


def field_component(spec: dict[str, Any]) -> gr.components.Component:
    """One Params field → one Gradio input (Params.describe() gives name, type, default, label, range)."""
    label = spec.get("label") or spec["name"].replace("_", " ").capitalize()
    info = spec.get("help") or None
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
