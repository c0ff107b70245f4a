"""build_app: the Blocks app — a tab per generator, the gallery, the models — wired to the services."""

from __future__ import annotations

import os
from typing import Any

import gradio as gr

from studio.services import Services
from studio.ui.handlers import Handlers
from studio.ui.tabs.gallery import build_gallery_tab
from studio.ui.tabs.generator import GeneratorTab, build_generator_tab
from studio.ui.tabs.models import build_models_tab
from studio.ui.tabs.pickers import REPO_ROOT


def build_app(services: Services) -> gr.Blocks:
    # Gradio's own upload/preview cache lives in the data dir, not a world-readable system temp dir.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(services.config.data_dir / "cache"))
    # Gallery files are served in place (never copied into the cache); the file route still needs the login.
    gr.set_static_paths([services.gallery.root / "images", services.gallery.root / "thumbs", REPO_ROOT / "assets"])
    handlers = Handlers(services)
    # delete_cache: previews and uploads older than a day are dropped from the cache, hourly
    with gr.Blocks(title="Atelier", delete_cache=(3600, 86400)) as app:
        gr.Markdown("# Atelier")
        with gr.Tabs() as tabs:
            generators = [build_generator_tab(kind, handlers) for kind in services.catalog.kinds]
            gallery = build_gallery_tab(handlers)
            build_models_tab(handlers)
        _wire_reuse(handlers, tabs, gallery.selected, gallery.reuse, [g for g in generators if g.installed])
        app.load(handlers.gallery_page, inputs=gallery.filters,
                 outputs=[gallery.grid, gallery.ids, gallery.page_label], api_name="load_gallery")
    return app


def _wire_reuse(handlers: Handlers, tabs: gr.Tabs, selected: gr.Textbox, button: gr.Button,
                generators: list[GeneratorTab]) -> None:
    """"Reuse settings": open the artwork's tab with its model, seed and every param filled in."""
    outputs: list[Any] = [tabs]
    for g in generators:
        outputs += [g.model, g.seed, *(b.component for b in g.bindings)]
    store = handlers.services.inputs

    def reuse(image_id: str, request: gr.Request) -> list[Any]:
        kind, model, seed, params = handlers.reuse(image_id, request)
        updates: list[Any] = [gr.Tabs(selected=kind)]
        for g in generators:
            if g.kind != kind:
                updates += [gr.skip()] * (2 + len(g.bindings))
                continue
            updates += [model, seed] + [b.from_params(params, store) for b in g.bindings]
        return updates

    button.click(reuse, inputs=[selected], outputs=outputs, api_name="reuse_settings")
