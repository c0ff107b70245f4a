"""build_app: the Blocks app — a tab per generator, the gallery, the models — wired to the services."""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path
from typing import Any

import gradio as gr

from studio.services import Services
from studio.ui.browser import ON_LOAD_JS, THEME_TOGGLE_ID, TOGGLE_THEME_JS
from studio.ui.handlers import Handlers
from studio.ui.reuse import TabSettings
from studio.ui.tabs.gallery import GalleryTab, build_gallery_tab
from studio.ui.tabs.generator import GeneratorTab, build_generator_tab
from studio.ui.tabs.models import build_models_tab
from studio.ui.tabs.pickers import REPO_ROOT
from studio.ui.uploads import install as clean_up_broken_uploads


def build_app(services: Services) -> gr.Blocks:
    # Gradio's own upload/preview cache lives in the data dir, not a world-readable system temp dir.
    os.environ.setdefault("GRADIO_TEMP_DIR", str(services.config.data_dir / "cache"))
    sweep_upload_cache(Path(os.environ["GRADIO_TEMP_DIR"]))
    clean_up_broken_uploads()  # an upload that breaks off or is refused removes its temporary file at once
    # Gallery files are served in place (never copied into the cache); the file route still needs the login.
    gr.set_static_paths([services.gallery.root / "images", services.gallery.root / "thumbs", REPO_ROOT / "assets"])
    handlers = Handlers(services)
    # delete_cache: previews and uploads older than a day are dropped from the cache, hourly
    with gr.Blocks(title="Atelier", delete_cache=(3600, 86400)) as app:
        with gr.Row(equal_height=True):
            gr.Markdown("# Atelier")
            theme = gr.Button("◐ Light / dark", elem_id=THEME_TOGGLE_ID, size="sm", scale=0, min_width=120)
        with gr.Tabs() as tabs:
            generators = [build_generator_tab(kind, handlers) for kind in services.catalog.kinds]
            gallery = build_gallery_tab(handlers)
            build_models_tab(handlers)
        installed = [g for g in generators if g.installed]
        _wire_reuse(handlers, tabs, gallery, installed)
        theme.click(None, js=TOGGLE_THEME_JS, api_name="toggle_theme", api_visibility="private")
        app.load(None, js=ON_LOAD_JS, api_name="browser_setup", api_visibility="private")
        app.load(handlers.gallery_page, inputs=gallery.filters,
                 outputs=[gallery.grid, gallery.ids, gallery.page_label], api_name="load_gallery")
        _wire_user_lists(app, installed)
    return app


def sweep_upload_cache(cache: Path, *, older_than_s: float = 600.0) -> int:
    """Remove what uploads left in Gradio's cache that no one can use: empty files (an empty upload is stored as
    one) and the temporary files of uploads that broke off (`tmp*` at the top), once older than `older_than_s`
    (never an upload in progress). The number removed."""
    cutoff, removed = time.time() - older_than_s, 0
    if not cache.is_dir():
        return 0
    for path in [*cache.glob("tmp*"), *cache.glob("*/*")]:
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to remove
            info = path.lstat()
            stray = path.parent == cache or info.st_size == 0
            if stat.S_ISREG(info.st_mode) and stray and info.st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def _wire_user_lists(app: gr.Blocks, generators: list[GeneratorTab]) -> None:
    """On page load, each tab's per-user lists (saved presets, recent prompts) are filled for whoever logged in."""
    lists = [entry for g in generators for entry in g.user_lists]

    def load(request: gr.Request) -> list[gr.Dropdown]:
        return [refresh(request) for _, refresh in lists]

    app.load(load, outputs=[dropdown for dropdown, _ in lists], api_name="load_user_lists", show_progress="hidden")


def _wire_reuse(handlers: Handlers, tabs: gr.Tabs, gallery: GalleryTab, generators: list[GeneratorTab]) -> None:
    """"Reuse settings", "Upscale" and a PNG dropped on any generator tab: open the tab the settings belong to with
    its model, seed and params filled in. The notes (what could not be used) go to that tab's status."""
    outputs: list[Any] = [tabs]
    for g in generators:
        outputs += [g.model, g.seed, *(b.component for b in g.bindings), *_styles(g)]
    store = handlers.services.inputs

    def fill(settings: TabSettings) -> list[Any]:
        updates: list[Any] = [gr.Tabs(selected=settings.kind)]
        for g in generators:
            if g.kind != settings.kind:
                updates += [gr.skip()] * (2 + len(g.bindings) + len(_styles(g)))
                continue
            updates += [settings.model, settings.seed] + [b.from_params(settings.params, store) for b in g.bindings]
            updates += [gr.skip() if settings.styles is None else settings.styles for _ in _styles(g)]
        return updates

    def reuse(image_id: str, request: gr.Request) -> list[Any]:
        return fill(handlers.reuse(image_id, request))

    gallery.reuse.click(reuse, inputs=[gallery.selected], outputs=outputs, api_name="reuse_settings")

    # the statuses follow the tabs' own outputs, so these events fill each tab in the same order
    statuses = [g.status for g in generators]

    def with_notes(settings: TabSettings) -> list[Any]:
        notes = "\n\n".join(settings.notes)
        return [*fill(settings), *(notes if g.kind == settings.kind else gr.skip() for g in generators)]

    def upscale(image_id: str, request: gr.Request) -> list[Any]:
        return with_notes(handlers.to_upscale(image_id, request))

    gallery.upscale.click(upscale, inputs=[gallery.selected], outputs=[*outputs, *statuses],
                          api_name="upscale_artwork")

    def from_png(path: str | None, request: gr.Request) -> list[Any]:
        return [*with_notes(handlers.png_settings(path, request)), None]

    for g in generators:
        g.png.upload(from_png, inputs=[g.png], outputs=[*outputs, *statuses, g.png], api_name=f"png_settings_{g.kind}")


def _styles(tab: GeneratorTab) -> list[gr.Dropdown]:
    return [tab.styles] if tab.styles is not None else []
