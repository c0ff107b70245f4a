"""A generator tab: model picker, the pipeline's own controls, seed, Generate/Stop, progress and results.

The controls come from the pipeline's Params (type, default, range, label), so a pipeline gets a working
tab the day it is registered; a tab whose pipeline or models are missing says so plainly instead. Around them sit
the artist's shortcuts: a model's own defaults when it is picked, presets (built-in and saved), recent prompts,
the last seed, and settings loaded from a dropped PNG (wired in app.py, since a PNG may belong to another tab).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from pipelines.models import kinds
from studio.ui.browser import GENERATE_ID
from studio.ui.forms import Binding, build_bindings
from studio.ui.handlers import Handlers
from studio.ui.presets import builtin_presets
from studio.ui.tabs.networks import build_lora_picker
from studio.ui.tabs.styles import build_styles

TITLES = {"text_to_image": "Text to Image", "gan": "GAN", "vae": "VAE", "style_transfer": "Style Transfer"}
# What to make rather than how: a preset keeps every other setting of its tab (pictures are never kept)
NOT_IN_PRESETS = ("prompt", "seeds")
PROMPT_LABEL_CHARS = 80
# a choice list refreshed per user (presets, recent prompts): the dropdown, and what refreshes it for a request
UserList = tuple[gr.Dropdown, Callable[[gr.Request], gr.Dropdown]]


def title_of(kind: str) -> str:
    return TITLES.get(kind, kind.replace("_", " ").title())


def _signature(names: list[str], *, progress: bool = False) -> inspect.Signature:
    positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
    request = inspect.Parameter("request", positional, annotation=gr.Request)
    # Gradio injects a progress tracker (the bar with an ETA) for a parameter whose default is gr.Progress()
    tracker = [inspect.Parameter("progress", positional, default=gr.Progress())] if progress else []
    # default None: an API client may leave out a control without an initial value (an optional image)
    fields = [inspect.Parameter(n, positional, default=None) for n in names]
    return inspect.Signature([request, *tracker, *fields])


@dataclass
class GeneratorTab:
    kind: str
    model: gr.Dropdown | None = None
    seed: gr.Number | None = None
    bindings: list[Binding] = field(default_factory=list)
    status: gr.Markdown | None = None
    png: gr.File | None = None  # "Load settings from a PNG"
    styles: gr.Dropdown | None = None  # the prompt styles picker, on tabs with a prompt and a negative prompt
    user_lists: list[UserList] = field(default_factory=list)

    @property
    def installed(self) -> bool:
        return self.model is not None

    def fill(self, values: Mapping[str, Any]) -> list[Any]:
        """Updates for the bindings: the value controls named in `values` take those values, the rest stay."""
        return [values.get(b.names[0], gr.skip()) if b.kind == "value" else gr.skip() for b in self.bindings]

    def preset_fields(self) -> list[Binding]:
        return [b for b in self.bindings if b.kind == "value" and b.names[0] not in NOT_IN_PRESETS]


def with_defaults(specs: list[dict[str, Any]], defaults: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Params description with a model's defaults as the initial values of the fields they name."""
    return [{**spec, "default": defaults[spec["name"]]} if spec["name"] in defaults else spec for spec in specs]


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
        default = catalog.default_model(kind)
        specs = catalog.pipeline(kind).Params.describe()
        specs = with_defaults(specs, handlers.model_defaults(kind, default.id) if default else {})
        with gr.Row():
            with gr.Column(scale=1):
                with gr.Row():
                    # a hub id typed here is fetched on first use, when the pipeline supports hub models and the
                    # studio lets its users name any (see JobCaps.any_hub_model)
                    typed = catalog.takes_hub_ids(kind) and handlers.services.generation.caps.any_hub_model
                    tab.model = gr.Dropdown(choices=[m.id for m in models], value=default.id if default else None,
                                            label="Model", allow_custom_value=typed, scale=3)
                    fields = {s["name"] for s in specs if s["name"] not in NOT_IN_PRESETS}
                    # custom values: a user's saved presets join the choices per session (on load), and an API call
                    # names one without that session; the handler checks the name
                    preset = gr.Dropdown(choices=list(builtin_presets(kind, fields)), value=None, label="Preset",
                                         scale=2, allow_custom_value=True)
                restricted = [f"`{m.id}`: {m.restriction}" for m in models if m.restriction]
                if restricted:
                    gr.Markdown("Licence limits: " + "; ".join(restricted))
                has_prompt = any(spec["name"] == "prompt" for spec in specs)
                history = gr.Dropdown(choices=[], value=None, label="Recent prompts", info="pick one to use it again",
                                      allow_custom_value=True) if has_prompt else None
                tab.bindings = build_bindings(specs, kind)
                prompts = {b.names[0]: b.component for b in tab.bindings if b.names[0].endswith("prompt")}
                if {"prompt", "negative_prompt"} <= set(prompts):
                    tab.styles, style_choices = build_styles(kind, handlers, prompts["prompt"],
                                                             prompts["negative_prompt"])
                    tab.user_lists.append((tab.styles, style_choices))
                if kinds.LORA in catalog.pipeline(kind).prompt_networks and has_prompt:
                    build_lora_picker(kind, prompts["prompt"], handlers)
                with gr.Row(visible=catalog.pipeline(kind).seeded):
                    tab.seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)", scale=3)
                    dice = gr.Button("Random", scale=1, min_width=60)
                    last = gr.Button("♻ Last", scale=1, min_width=60)
                with gr.Accordion("Save these settings as a preset", open=False), gr.Row():
                    preset_name = gr.Textbox(label="Preset name", scale=3, max_length=60)
                    save = gr.Button("Save", scale=1, min_width=60)
                    delete = gr.Button("Delete the chosen preset", scale=1, min_width=60)
                tab.png = gr.File(label="Load settings from a PNG (Atelier or AUTOMATIC1111)", file_types=[".png"],
                                  type="filepath", height=120)
            with gr.Column(scale=1):
                # at the top of the results, not below the controls: in view on a 1280×800 screen (and Ctrl+Enter)
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id=GENERATE_ID.format(kind=kind),
                                         scale=3)
                    stop = gr.Button("Stop", variant="stop", scale=1)
                tab.status = gr.Markdown("Ready.")
                preview = gr.Image(label="Preview", type="pil", interactive=False, height=256)
                results = gr.Gallery(label="Results", columns=2, height=400)
                job_id = gr.Textbox(visible=False)
        generated = _wire_generation(tab, handlers, generate, stop, dice, last, preview, results, job_id)
        tab.user_lists.append((preset, _wire_presets(tab, handlers, preset, preset_name, save, delete)))
        if history is not None:
            tab.user_lists.append((history, _wire_history(tab, handlers, history, generated)))
    return tab


def _wire_generation(tab: GeneratorTab, handlers: Handlers, generate: gr.Button, stop: gr.Button, dice: gr.Button,
                     last: gr.Button, preview: gr.Image, results: gr.Gallery,
                     job_id: gr.Textbox) -> gr.events.Dependency:
    """Generate, Stop, the seed buttons, and the model's defaults when the user picks a model (`input`, not `change`:
    "Reuse settings" and a dropped PNG set the model too, and their settings must win). Returns the Generate event."""
    kind, bindings = tab.kind, tab.bindings

    styles = [tab.styles] if tab.styles is not None else []

    def run(request: gr.Request, progress: gr.Progress, model: str, seed: float,
            *values: Any) -> Iterator[tuple[object, ...]]:
        chosen = values[len(bindings)] if styles else None  # the Styles picker's names follow the params
        yield from handlers.generate(kind, bindings, model, seed, values[:len(bindings)], request, progress,
                                     chosen or ())

    # API clients see each control under its field's name (`num_steps`), not `param_5`.
    names = ["model", "seed", *(b.names[0] for b in bindings), *(["styles"] if styles else [])]
    run.__signature__ = _signature(names, progress=True)  # type: ignore[attr-defined]

    generated = generate.click(
        run, inputs=[tab.model, tab.seed, *(b.component for b in bindings), *styles],
        outputs=[tab.status, preview, results, job_id], api_name=f"generate_{kind}", concurrency_limit=None,
    )
    stop.click(handlers.stop, inputs=[job_id], outputs=[tab.status], api_name=f"stop_{kind}")
    dice.click(lambda: -1, outputs=[tab.seed], api_name=f"random_seed_{kind}")
    last.click(handlers.last_seed, inputs=[job_id], outputs=[tab.seed], api_name=f"last_seed_{kind}")
    tab.model.input(lambda model: tab.fill(handlers.model_defaults(kind, model)), inputs=[tab.model],
                    outputs=[b.component for b in bindings], api_name=f"model_defaults_{kind}", show_progress="hidden")
    return generated


def _wire_presets(tab: GeneratorTab, handlers: Handlers, preset: gr.Dropdown, name: gr.Textbox, save: gr.Button,
                  delete: gr.Button) -> Callable[[gr.Request], gr.Dropdown]:
    """Choosing a preset fills its controls; Save stores the tab's settings under a name, Delete removes the chosen
    one. Returns what refreshes the list for a user (their own presets join the built-in ones)."""
    kind, saved = tab.kind, tab.preset_fields()
    fields = {b.names[0] for b in saved}

    def choices(request: gr.Request, value: str | None = None) -> gr.Dropdown:
        return gr.Dropdown(choices=handlers.preset_choices(kind, fields, request), value=value)

    def apply(name: str | None, request: gr.Request) -> list[Any]:
        return tab.fill(handlers.preset_values(kind, name, fields, request))

    def store(request: gr.Request, name: str, *values: Any) -> gr.Dropdown:
        settings = {b.names[0]: value for b, value in zip(saved, values, strict=True)}
        return choices(request, handlers.save_preset(kind, name, settings, fields, request))

    def remove(name: str | None, request: gr.Request) -> gr.Dropdown:
        handlers.delete_preset(kind, name, fields, request)
        return choices(request)

    # API clients name each setting (`num_steps`), as for generate
    store.__signature__ = _signature(["name", *(b.names[0] for b in saved)])  # type: ignore[attr-defined]
    preset.input(apply, inputs=[preset], outputs=[b.component for b in tab.bindings], api_name=f"apply_preset_{kind}",
                 show_progress="hidden")
    save.click(store, inputs=[name, *(b.component for b in saved)], outputs=[preset], api_name=f"save_preset_{kind}")
    delete.click(remove, inputs=[preset], outputs=[preset], api_name=f"delete_preset_{kind}")
    return choices


def _wire_history(tab: GeneratorTab, handlers: Handlers, history: gr.Dropdown,
                  generated: gr.events.Dependency) -> Callable[[gr.Request], gr.Dropdown]:
    """Picking a recent prompt puts it in the prompt box; the list is refreshed after each generation."""
    prompt = next(b.component for b in tab.bindings if b.names[0] == "prompt")

    def choices(request: gr.Request) -> gr.Dropdown:
        prompts = handlers.recent_prompts(tab.kind, request)
        return gr.Dropdown(choices=[(_prompt_label(p), p) for p in prompts], value=None)

    history.input(lambda chosen: chosen or gr.skip(), inputs=[history], outputs=[prompt],
                  api_name=f"use_prompt_{tab.kind}", show_progress="hidden")
    generated.then(choices, outputs=[history], api_name=f"prompt_history_{tab.kind}", show_progress="hidden")
    return choices


def _prompt_label(prompt: str) -> str:
    line = " ".join(prompt.split())
    return line if len(line) <= PROMPT_LABEL_CHARS else line[:PROMPT_LABEL_CHARS - 1] + "…"
