"""Settings that fill a generator tab again: a gallery artwork's recipe ("Reuse settings") or a dropped PNG's (an
Atelier recipe, or AUTOMATIC1111 parameters for the text-to-image tab), checked as a request would be. Errors are
ValueErrors written for the user; the handlers show them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from pipelines.catalog import UnknownModel
from studio.gallery import Recipe
from studio.services import Services
from studio.styles import taken_out
from studio.ui.png_info import a1111_settings, read_png_settings


@dataclass
class TabSettings:
    """What fills a generator tab: model and seed (gr.skip() keeps the tab's), the params, and a note for the tab's
    status."""

    kind: str
    model: Any
    seed: Any
    params: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    styles: list[str] | None = None  # the prompt styles to choose (None: the tab's stay)


def png_settings(services: Services, path: str | Path, user: str) -> TabSettings:
    """The settings of a dropped PNG: an Atelier recipe fills its own generator's tab, AUTOMATIC1111 parameters the
    text-to-image tab. What cannot be used is kept out and said in the notes."""
    try:
        found = read_png_settings(path)
    except OSError:
        raise ValueError("the uploaded file cannot be read") from None
    if found.recipe is not None:
        settings = recipe_settings(services, found.recipe, user)
        settings.notes.insert(0, f"Settings loaded from an Atelier PNG ({found.recipe.pipeline}, seed "
                                 f"{found.recipe.seed}).")
        return settings
    catalog = services.catalog
    if not catalog.has_pipeline("text_to_image"):
        raise ValueError("this PNG holds AUTOMATIC1111 settings, which fill the text-to-image tab; that generator is "
                         "not installed here")
    models = [m.id for m in catalog.models("text_to_image") if not m.refusal]
    mapped = a1111_settings(found.a1111 or {}, catalog.pipeline("text_to_image").Params, models)
    seed = gr.skip() if mapped.seed is None else mapped.seed
    notes = ["Settings loaded from an AUTOMATIC1111 PNG.", *found.notes, *mapped.notes]
    styles = _unstyled(services, user, mapped.styles, mapped.params, notes)
    return TabSettings("text_to_image", mapped.model or gr.skip(), seed, mapped.params, notes, styles)


def recipe_settings(services: Services, recipe: Recipe, user: str) -> TabSettings:
    """A recipe (a gallery artwork's, or a dropped PNG's from anywhere): fields this version lacks and input pictures
    this studio does not hold for `user` (another user's uploads are theirs, even when their recipe travels) are
    left out; a model it does not list keeps the tab's."""
    kind, catalog = recipe.pipeline, services.catalog
    if not catalog.has_pipeline(kind):
        raise ValueError(f"this artwork was made with the {kind} pipeline, which is not installed here")
    params_cls = catalog.pipeline(kind).Params
    known = {spec["name"] for spec in params_cls.describe()}
    params = {k: v for k, v in recipe.params.items() if k in known}
    unknown = sorted(set(recipe.params) - known)
    notes = [f"Not used here: {', '.join(unknown)}."] if unknown else []
    missing = [name for name in params_cls.image_fields()
               if params.get(name) and not services.inputs.exists(str(params[name]), owner=user)]
    if missing:
        params.update(dict.fromkeys(missing, ""))
        notes.append(f"Its input pictures ({', '.join(missing)}) are not stored in this studio; add them again.")
    try:
        params_cls.from_dict(params)
    except ValueError as e:
        raise ValueError(f"this PNG's settings do not fit the {kind} generator here: {e}") from None
    try:
        model = catalog.model(recipe.model, kind, any_hub_id=services.generation.caps.any_hub_model).id
    except (UnknownModel, ValueError):
        model = gr.skip()
        notes.append(f"The model {recipe.model!r} is not available here; kept yours.")
    names = recipe.info.get("styles")
    return TabSettings(kind, model, recipe.seed, params, notes,
                       _unstyled(services, user, names if isinstance(names, list) else [], params, notes))


def _unstyled(services: Services, user: str, names: list[str], params: dict[str, Any], notes: list[str]) -> list[str]:
    """The styles a picture's prompts were expanded with, taken back out of `params` (see styles.taken_out)."""
    if "prompt" not in params or not all(isinstance(n, str) for n in names):
        return []
    params["prompt"], params["negative_prompt"], chosen, note = taken_out(
        services.styles, user, names, params["prompt"], params.get("negative_prompt", ""))
    notes.extend([note] if note else [])
    return chosen
