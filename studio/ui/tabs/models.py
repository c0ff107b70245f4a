"""The Models tab: every model the catalogue knows, with source, size, licence and status; and the workers."""

from __future__ import annotations

import gradio as gr

from studio.ui.handlers import Handlers

MODEL_COLUMNS = ["Model", "Generator", "Source", "Size", "Licence", "Licence limits", "Status", "About"]
WORKER_COLUMNS = ["Worker", "Device", "State", "Job", "Restarts", "Models in memory", "Memory used / budget"]


def build_models_tab(handlers: Handlers) -> tuple[gr.Dataframe, gr.Dataframe, gr.Button]:
    with gr.Tab("Models", id="models"):
        models = gr.Dataframe(headers=MODEL_COLUMNS, value=handlers.models_table, interactive=False,
                              label="Models", wrap=True)
        workers = gr.Dataframe(headers=WORKER_COLUMNS, value=handlers.workers_table, interactive=False,
                               label="Workers")
        refresh = gr.Button("Rescan models")
    refresh.click(handlers.rescan_models, outputs=[models], api_name="list_models").then(
        handlers.workers_table, outputs=[workers], api_name="list_workers")
    return models, workers, refresh
