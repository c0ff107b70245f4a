"""The Styles picker of a tab with a prompt and a negative prompt: the user's own prompt styles, chosen for the next
job (applied at submit, named in the recipe), applied into the prompt boxes, saved from them, deleted, and
exchanged as A1111's styles.csv."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from studio.styles import MAX_CSV_BYTES, Style, apply, read_csv, write_csv
from studio.ui.handlers import USER_ERRORS, user_of

if TYPE_CHECKING:
    from studio.ui.handlers import Handlers


def build_styles(kind: str, handlers: Handlers, prompt: gr.Textbox,
                 negative: gr.Textbox) -> tuple[gr.Dropdown, Callable[[gr.Request], gr.Dropdown]]:
    """The controls under the prompts; returns the Styles dropdown and what refreshes its choices for a user."""
    store = handlers.services.styles
    with gr.Row():
        # custom values: the choices are filled per user on load; the store checks every name at submit
        styles = gr.Dropdown(choices=[], value=[], multiselect=True, allow_custom_value=True, label="Styles",
                             info="your prompt styles, applied to the prompts when you generate", scale=4)
        put_in = gr.Button("Apply to the prompts", scale=1, min_width=80)
    with gr.Accordion("Manage styles", open=False):
        with gr.Row():
            name = gr.Textbox(label="Style name", max_length=100, scale=3,
                              info="saved from the prompts above; write {prompt} where the prompt goes")
            save = gr.Button("Save the prompts as a style", scale=2)
            delete = gr.Button("Delete the chosen styles", scale=2)
        with gr.Row():
            upload = gr.File(label="Import styles.csv (AUTOMATIC1111's)", file_types=[".csv"], type="filepath",
                             height=100)
            export = gr.Button("Export styles.csv")
            download = gr.File(label="Your styles", interactive=False, height=100)
        report = gr.Markdown()

    def choices(request: gr.Request, value: list[str] | None = None) -> gr.Dropdown:
        names = store.names(user_of(request))
        return gr.Dropdown(choices=names, value=[n for n in value or [] if n in names])

    def into_prompts(chosen: list[str], text: str, negative_text: str, request: gr.Request) -> tuple[Any, ...]:
        with _errors():
            expanded = apply(store.chosen(user_of(request), chosen or []), text or "", negative_text or "")
        return *expanded, gr.Dropdown(value=[])  # applied: choosing them again would apply them twice

    def save_style(title: str, text: str, negative_text: str, chosen: list[str], request: gr.Request) -> tuple:
        with _errors():
            saved = store.save(user_of(request), Style(title, text or "", negative_text or ""))
        return choices(request, chosen), f"Saved the style {saved.name!r}."

    def delete_chosen(chosen: list[str], request: gr.Request) -> tuple:
        if not chosen:
            raise gr.Error("choose the styles to delete in the Styles list first")
        with _errors():
            for style in chosen:
                store.delete(user_of(request), style)
        return choices(request), f"Deleted {', '.join(chosen)}."

    def import_csv(path: str | None, chosen: list[str], request: gr.Request) -> tuple:
        if not path:
            return gr.skip(), gr.skip(), gr.skip()
        if os.path.getsize(path) > MAX_CSV_BYTES:
            raise gr.Error(f"a styles file has at most {MAX_CSV_BYTES:,} bytes")
        with _errors():
            saved = store.save_all(user_of(request), read_csv(Path(path).read_bytes()))
        return choices(request, chosen), f"Imported {len(saved)} styles.", None

    def export_csv(request: gr.Request) -> str:
        # a file of its own per export, in Gradio's cache (swept after a day), under a name no one can guess
        cache = os.environ.get("GRADIO_TEMP_DIR") or None
        with _errors(), tempfile.NamedTemporaryFile("wb", suffix=".csv", prefix="styles-", dir=cache,
                                                    delete=False) as out:
            out.write(write_csv(store.all(user_of(request))))
        return out.name

    put_in.click(into_prompts, inputs=[styles, prompt, negative], outputs=[prompt, negative, styles],
                 api_name=f"apply_styles_{kind}", show_progress="hidden")
    save.click(save_style, inputs=[name, prompt, negative, styles], outputs=[styles, report],
               api_name=f"save_style_{kind}")
    delete.click(delete_chosen, inputs=[styles], outputs=[styles, report], api_name=f"delete_styles_{kind}")
    upload.upload(import_csv, inputs=[upload, styles], outputs=[styles, report, upload],
                  api_name=f"import_styles_{kind}")
    export.click(export_csv, outputs=[download], api_name=f"export_styles_{kind}")
    return styles, choices


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """The store's refusals as Gradio errors, in its words."""
    try:
        yield
    except USER_ERRORS as e:
        raise gr.Error(str(e)) from None
