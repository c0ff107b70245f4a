"""A generator tab: model picker, the pipeline's own controls, seed, Generate/Stop, progress and results.

The controls come from the pipeline's Params (type, default, range, label), so a pipeline gets a working
tab the day it is registered; a tab whose pipeline or models are missing says so plainly instead.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field

import gradio as gr

from studio.ui.forms import Binding, build_bindings
from studio.ui.handlers import Handlers

TITLES = {"text_to_image": "Text to Image", "gan": "GAN", "vae": "VAE", "style_transfer": "Style Transfer"}


def title_of(kind: str) -> str:
    return TITLES.get(kind, kind.replace("_", " ").title())


def _signature(names: list[str]) -> inspect.Signature:
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    request = inspect.Parameter("request", positional, annotation=gr.Request)
    # Gradio injects a progress tracker (the bar with an ETA) for a parameter whose default is gr.Progress()
    progress = inspect.Parameter("progress", positional, default=gr.Progress())
    # default None: an API client may leave out a control without an initial value (an optional image)
    fields = [inspect.Parameter(n, positional, default=None) for n in names]
    return inspect.Signature([request, progress, *fields])


@dataclass
class GeneratorTab:
    kind: str
    model: gr.Dropdown | None = None
    seed: gr.Number | None = None
    bindings: list[Binding] = field(default_factory=list)

    @property
    def installed(self) -> bool:
        return self.model is not None


def build_generator_tab(kind: str, handlers: Handlers) -> GeneratorTab:
    catalog = handlers.services.catalog
    tab = GeneratorTab(kind)
    with gr.Tab(title_of(kind), id=kind):
        if not catalog.has_pipeline(kind):
            gr.Markdown(f"**{title_of(kind)}** is not part of this version of Atelier yet: no pipeline is "
                        "installed for it, so there is nothing to generate here.")
            return tab
        models = catalog.models(kind)
        if not models:
            gr.Markdown(f"No {title_of(kind)} models are installed. Put one under `--models-dir`, or see the "
                        "Models tab for what Atelier can use.")
            return tab
        with gr.Row():
            with gr.Column(scale=1):
                # a hub id typed here is fetched on first use, when the pipeline supports hub models and the
                # studio lets its users name any (see JobCaps.any_hub_model)
                default = catalog.default_model(kind)
                typed = kind in ("text_to_image", "vae") and handlers.services.generation.caps.any_hub_model
                tab.model = gr.Dropdown(choices=[m.id for m in models], value=default.id if default else None,
                                        label="Model", allow_custom_value=typed)
                restricted = [f"`{m.id}`: {m.restriction}" for m in models if m.restriction]
                if restricted:
                    gr.Markdown("Licence limits: " + "; ".join(restricted))
                tab.bindings = build_bindings(catalog.pipeline(kind).Params.describe(), kind)
                with gr.Row():
                    tab.seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)", scale=3)
                    dice = gr.Button("Random", scale=1, min_width=60)
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary")
                    stop = gr.Button("Stop", variant="stop")
            with gr.Column(scale=1):
                status = gr.Markdown("Ready.")
                preview = gr.Image(label="Preview", type="pil", interactive=False, height=256)
                results = gr.Gallery(label="Results", columns=2, height=400)
                job_id = gr.Textbox(visible=False)
        bindings = tab.bindings

        def run(request: gr.Request, progress: gr.Progress, model: str, seed: float,
                *values: object) -> Iterator[tuple[object, ...]]:
            yield from handlers.generate(kind, bindings, model, seed, values, request, progress)

        # API clients see each control under its field's name (`num_steps`), not `param_5`.
        run.__signature__ = _signature(["model", "seed", *(b.names[0] for b in bindings)])  # type: ignore[attr-defined]

        generate.click(
            run, inputs=[tab.model, tab.seed, *(b.component for b in bindings)],
            outputs=[status, preview, results, job_id], api_name=f"generate_{kind}", concurrency_limit=None,
        )
        stop.click(handlers.stop, inputs=[job_id], outputs=[status], api_name=f"stop_{kind}")
        dice.click(lambda: -1, outputs=[tab.seed], api_name=f"random_seed_{kind}")
    return tab

