"""The form builder: controls that matter only in some modes are shown and hidden by the mode control."""

from __future__ import annotations

import gradio as gr

from pipelines.gan import GanParams
from studio.ui.forms import build_bindings


def label_in(block: gr.blocks.Block) -> str:
    """The label of the one control inside a layout block (Gradio may wrap it in a Form)."""
    while not hasattr(block, "label"):
        (block,) = block.children
    return block.label


def test_mode_specific_controls_follow_the_mode() -> None:
    with gr.Blocks() as app:
        bindings = build_bindings(GanParams.describe(), "gan")
    names = [b.names[0] for b in bindings]
    assert names == [spec["name"] for spec in GanParams.describe()]  # every field keeps its control, in order
    (event,) = [d for d in app.fns.values() if d.api_name == "show_fields_gan"]
    columns = event.outputs
    initially = {label_in(c): c.visible for c in columns}
    assert initially["Number of images"] and not initially["Frames"] and not initially["Walk step"]
    shown = event.fn("walk")
    by_label = {label_in(c): update.visible for c, update in zip(columns, shown, strict=True)}
    assert by_label == {"Number of images": False, "Layout": False, "Frames": True, "Frames per second": True,
                        "Loop back to the first seed": False, "Walk step": True, "Variation strength": False}
