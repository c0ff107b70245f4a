"""The Gallery tab: a searchable grid of the user's artworks and a detail view with their recipe."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio.ui.handlers import Handlers


@dataclass
class GalleryTab:
    selected: gr.Textbox
    reuse: gr.Button
    upscale: gr.Button
    refresh: gr.Button
    grid: gr.Gallery
    ids: gr.State
    page_label: gr.Markdown
    filters: list[gr.components.Component]


def build_gallery_tab(handlers: Handlers) -> GalleryTab:
    catalog = handlers.services.catalog
    with gr.Tab("Gallery", id="gallery"):
        with gr.Row():
            query = gr.Textbox(label="Search prompts and models", scale=3)
            pipeline = gr.Dropdown(choices=[("All generators", "")] + [(k, k) for k in catalog.kinds], value="",
                                   label="Generator", scale=1)
            model = gr.Dropdown(choices=[("All models", "")] + [(m.id, m.id) for m in catalog.models()], value="",
                                label="Model", scale=1, allow_custom_value=True)
            favourites = gr.Checkbox(label="Favourites only", scale=1)
        with gr.Row():
            page = gr.Number(value=1, precision=0, label="Page", minimum=1, scale=1)
            page_label = gr.Markdown()
            refresh = gr.Button("Refresh", scale=1)
        with gr.Row():
            with gr.Column(scale=3):
                grid = gr.Gallery(label="Artworks", columns=6, height=560, allow_preview=False)
            with gr.Column(scale=2):
                selected = gr.Textbox(label="Artwork id", interactive=True)
                image = gr.Image(label="Artwork", type="filepath", interactive=False, height=320)
                parameters = gr.Textbox(label="Parameters (A1111 format)", lines=4, interactive=False)
                recipe = gr.JSON(label="Recipe")
                with gr.Row():
                    favourite = gr.Button("☆ Favourite")
                    download = gr.DownloadButton("Download PNG")
                    download_gif = gr.DownloadButton("Download GIF", visible=False)
                    download_mp4 = gr.DownloadButton("Download MP4", visible=False)
                    delete = gr.Button("Delete", variant="stop")
                with gr.Row():
                    reuse = gr.Button("Reuse settings", variant="primary")
                    upscale = gr.Button("Upscale", visible=catalog.has_pipeline("upscale"))
                notice = gr.Markdown()
        ids = gr.State([])

    filters = [query, pipeline, model, favourites, page]
    listing = {"fn": handlers.gallery_page, "inputs": filters, "outputs": [grid, ids, page_label]}
    refresh.click(**listing, api_name="gallery_page")
    query.submit(**listing, api_name="gallery_search")
    for name, control in (("generator", pipeline), ("model", model), ("favourites", favourites), ("page", page)):
        control.change(**listing, api_name=f"gallery_filter_{name}")

    def pick(ids: list[str], evt: gr.SelectData) -> str:
        return ids[evt.index]

    detail_outputs = [selected, image, parameters, recipe, favourite, download, download_gif, download_mp4]
    grid.select(pick, inputs=[ids], outputs=[selected], api_name="pick_artwork").then(
        handlers.detail, inputs=[selected], outputs=detail_outputs, api_name="artwork_detail")
    selected.submit(handlers.detail, inputs=[selected], outputs=detail_outputs, api_name="open_artwork")
    favourite.click(handlers.toggle_favourite, inputs=[selected], outputs=[favourite], api_name="toggle_favourite")
    delete.click(handlers.delete, inputs=[selected], outputs=[notice], api_name="delete_artwork").then(
        **listing, api_name="gallery_after_delete")
    return GalleryTab(selected, reuse, upscale, refresh, grid, ids, page_label, filters)
