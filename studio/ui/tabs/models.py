"""The Models tab: every model the catalogue knows and every file of the user's model folders, with kind, family,
source, size, hash, licence and status, filtered by kind and by words, with their preview pictures; and the
workers."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.ui.handlers import Handlers
from studio.ui.model_library import ALL, KIND_CHOICES, MODEL_COLUMNS

# Paths and licences wrap; the short columns keep their words whole
COLUMN_WIDTHS = ["14%", "8%", "6%", "10%", "13%", "6%", "9%", "10%", "8%", "8%", "8%"]
WORKER_COLUMNS = ["Worker", "Device", "State", "Job", "Restarts", "Models in memory", "Memory used / budget"]


@dataclass
class ModelsTab:
    kind: gr.Dropdown
    search: gr.Textbox
    summary: gr.Markdown
    models: gr.Dataframe
    previews: gr.Gallery
    workers: gr.Dataframe
    rescan: gr.Button


def build_models_tab(handlers: Handlers) -> ModelsTab:
    with gr.Tab("Models", id="models"):
        with gr.Row():
            kind = gr.Dropdown(choices=KIND_CHOICES, value=ALL, label="Kind", scale=1)
            search = gr.Textbox(label="Search models", placeholder="a name, an id or words of the description",
                                scale=3)
            rescan = gr.Button("Rescan models", scale=0, min_width=160)
        summary = gr.Markdown(lambda: handlers.model_previews()[1])
        models = gr.Dataframe(headers=MODEL_COLUMNS, value=handlers.models_table, interactive=False,
                              label="Models", wrap=True, max_height=520, column_widths=COLUMN_WIDTHS)
        previews = gr.Gallery(lambda: handlers.model_previews()[0], label="Previews", columns=8, height=200,
                              fit_columns=False, object_fit="contain", allow_preview=True, interactive=False)
        workers = gr.Dataframe(headers=WORKER_COLUMNS, value=handlers.workers_table, interactive=False,
                               label="Workers")
    filters = [kind, search]
    gr.on([kind.change, search.change], handlers.filter_models, inputs=filters, outputs=[models, previews, summary],
          api_name="filter_models", trigger_mode="always_last", show_progress="hidden")
    # `list_models` answers with the table alone: the REST-style clients and tests read it as one table
    rescan.click(handlers.rescan_models, inputs=filters, outputs=[models], api_name="list_models").then(
        handlers.model_previews, inputs=filters, outputs=[previews, summary], api_name="model_previews").then(
        handlers.workers_table, outputs=[workers], api_name="list_workers")
    return ModelsTab(kind, search, summary, models, previews, workers, rescan)
