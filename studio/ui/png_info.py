"""Settings from a PNG dropped on a generator tab: Atelier's recipe, or AUTOMATIC1111's `parameters` text.

The file is untrusted. It is read only when it is a PNG within the byte limit of input images, and only its text
chunks are read (studio.gallery.metadata.read_png_text): no pixel is decoded, however large. A1111's labels map
back to the text-to-image params (the inverse of TextToImageParams.a1111_fields); what does not map is named in a
note, never dropped silently.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.base import A1111_LABELS, BaseParams
from studio.gallery.inputs import MAX_INPUT_BYTES
from studio.gallery.metadata import PARAMETERS_KEY, RECIPE_KEY, Recipe, parse_parameters, read_png_text
from studio.generation import MAX_SEED

# A1111 label → text-to-image param, for the values that are plain numbers
_NUMBERS = {A1111_LABELS[name]: (name, kind) for name, kind in (("num_steps", int), ("cfg_scale", float),
                                                                ("clip_skip", int))}
# What A1111 writes for bookkeeping or reads with the sampler: handled, or not a setting, so never called "not used"
# (the LoRAs and embeddings are in the prompt)
_HANDLED = {"prompt", "negative_prompt", "Seed", "Size", A1111_LABELS["sampler"], "Schedule type", "Model",
            "Model hash", "Version", "VAE hash", "Pipeline", "Tiling", "Variation seed", "Variation seed strength",
            "Seed resize from", "Lora hashes", "TI hashes", "Styles array", "Denoising strength", "Hires upscale",
            "Hires resize", "Hires steps", "Hires upscaler", "Hires sampler", "Hires prompt", "Hires negative prompt",
            "Refiner", "Refiner switch at",
            "Template", "Negative Template", *_NUMBERS}  # the prompts as drawn from the templates are the prompts
_SIZE = re.compile(r"^\s*(\d{1,5})\s*x\s*(\d{1,5})\s*$")
_MAX_NAMED = 6  # unused A1111 settings named in the note; more are counted


@dataclass
class PngSettings:
    """What a PNG holds: Atelier's recipe, or (without one) A1111's parsed `parameters`; notes for the user."""

    recipe: Recipe | None = None
    a1111: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class A1111Settings:
    """A1111's fields as text-to-image settings: params that passed the pipeline's own checks, the seed and the model
    name (None when absent or unusable), and what could not be used."""

    params: dict[str, Any]
    seed: int | None
    model: str | None
    notes: list[str]
    styles: list[str] = field(default_factory=list)  # A1111's "Styles array": the styles its prompts were made with


def read_png_settings(path: str | Path) -> PngSettings:
    """The settings in the PNG at `path`; ValueError, in words for the user, if it is not a usable PNG or has none."""
    size = os.path.getsize(path)
    if size > MAX_INPUT_BYTES:
        raise ValueError(f"the file is {size / 1e6:.0f} MB; a PNG to read settings from may be at most "
                         f"{MAX_INPUT_BYTES / 1e6:.0f} MB")
    text = _text_chunks(Path(path))
    notes: list[str] = []
    if RECIPE_KEY in text:
        try:
            return PngSettings(recipe=Recipe.from_json(text[RECIPE_KEY]))
        except ValueError as e:
            if PARAMETERS_KEY not in text:
                raise ValueError(f"this PNG's Atelier recipe cannot be read: {e}") from None
            notes.append(f"Its Atelier recipe cannot be read ({e}); its A1111 parameters were used instead.")
    if PARAMETERS_KEY in text:
        return PngSettings(a1111=parse_parameters(text[PARAMETERS_KEY]), notes=notes)
    raise ValueError("this PNG holds no generation settings: it has neither an Atelier recipe nor AUTOMATIC1111 "
                     "parameters (a PNG keeps them only if the tool that made it wrote them, and many sites strip "
                     "them)")


def _text_chunks(path: Path) -> dict[str, str]:
    try:
        return read_png_text(path)
    except OSError as e:
        raise ValueError(f"this is not a readable PNG file ({e}); only PNGs carry settings") from None


def a1111_settings(fields: dict[str, Any], params: type[BaseParams], models: list[str]) -> A1111Settings:
    """Map A1111's fields (as `parse_parameters` returns them) onto text-to-image `params`, each value checked by the
    pipeline as a request would be; `models` are the text-to-image model ids of this studio."""
    fields = {"Clip skip": "1", **fields}  # A1111 writes it only above 1, as Atelier does
    values: dict[str, Any] = {"prompt": fields.get("prompt", ""), "negative_prompt": fields.get("negative_prompt", "")}
    notes: list[str] = []
    for label, (name, kind) in _NUMBERS.items():
        if label in fields:
            values[name] = _number(fields[label], kind)
    if "Size" in fields:
        match = _SIZE.match(str(fields["Size"]))
        if match:
            values["width"], values["height"] = int(match[1]), int(match[2])
        else:
            notes.append(f"Size {fields['Size']!r} is not W x H; kept yours.")
    if "Sampler" in fields:
        sampler = _sampler(str(fields["Sampler"]), str(fields.get("Schedule type", "")), _choices(params, "sampler"))
        if sampler is None:
            notes.append(f"The sampler {fields['Sampler']!r} is not available here; kept yours.")
        else:
            values["sampler"] = sampler
    if "Tiling" in fields:
        values["tiling"] = str(fields["Tiling"]).strip().lower() == "true"
    if "Variation seed" in fields:
        values["subseed"] = _number(fields["Variation seed"], int)
        values["subseed_strength"] = _number(fields.get("Variation seed strength", "0"), float)
    if "Seed resize from" in fields:
        resize = _SIZE.match(str(fields["Seed resize from"]))
        if resize:
            values["seed_resize_from_w"], values["seed_resize_from_h"] = int(resize[1]), int(resize[2])
        else:
            notes.append(f"Seed resize from {fields['Seed resize from']!r} is not W x H; kept yours.")
    values.update(_hires(fields, notes))
    if "Refiner" in fields:  # A1111 writes "name [hash]"
        values["refiner_checkpoint"] = re.sub(r"\s*\[[0-9a-fA-F]{6,64}\]$", "", str(fields["Refiner"]))
        values["refiner_switch_at"] = _number(fields.get("Refiner switch at", "0.8"), float)
    checked = _checked(values, params, notes)
    seed = _number(fields.get("Seed"), int)
    if "Seed" in fields and not (isinstance(seed, int) and 0 <= seed <= MAX_SEED):
        notes.append(f"Seed {fields['Seed']!r} is not a seed from 0 to {MAX_SEED}; kept yours.")
        seed = None
    model = _model(str(fields["Model"]), models) if "Model" in fields else None
    if "Model" in fields and model is None:
        notes.append(f"The model {fields['Model']!r} is not installed here; kept yours.")
    unused = [key for key in fields if key not in _HANDLED]
    if unused:
        more = f" and {len(unused) - _MAX_NAMED} more" if len(unused) > _MAX_NAMED else ""
        notes.append(f"Not used here: {', '.join(unused[:_MAX_NAMED])}{more}.")
    return A1111Settings(checked, seed if isinstance(seed, int) else None, model, notes, _styles(fields, notes))


def _hires(fields: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    """Hires fix's fields, as TextToImageParams writes them (A1111's labels); `Denoising strength` is hires fix's in
    a txt2img PNG and img2img's otherwise: the same param."""
    values: dict[str, Any] = {}
    if "Denoising strength" in fields:
        values["strength"] = _number(fields["Denoising strength"], float)
    if not {"Hires upscale", "Hires resize", "Hires upscaler"} & set(fields):
        return values
    values["enable_hr"] = True
    if "Hires resize" in fields:
        resize = _SIZE.match(str(fields["Hires resize"]))
        if resize:
            values["hr_resize_x"], values["hr_resize_y"] = int(resize[1]), int(resize[2])
        else:
            notes.append(f"Hires resize {fields['Hires resize']!r} is not W x H; kept yours.")
    for label, name, kind in (("Hires upscale", "hr_scale", float), ("Hires steps", "hr_second_pass_steps", int)):
        if label in fields:
            values[name] = _number(fields[label], kind)
    for label, name in (("Hires upscaler", "hr_upscaler"), ("Hires sampler", "hr_sampler"),
                        ("Hires prompt", "hr_prompt"), ("Hires negative prompt", "hr_negative_prompt")):
        if label in fields:
            values[name] = str(fields[label])
    return values


def _styles(fields: dict[str, Any], notes: list[str]) -> list[str]:
    if "Styles array" not in fields:
        return []
    try:
        names = json.loads(str(fields["Styles array"]))
    except ValueError:
        names = None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        notes.append(f"Styles array {str(fields['Styles array'])[:80]!r} is not a list of names; not used.")
        return []
    return names


def _number(text: Any, kind: type) -> Any:
    """`kind(text)` when `text` is one; the text itself otherwise, for the params check to name."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if kind is int and value.is_integer() else value


def _checked(values: dict[str, Any], params: type[BaseParams], notes: list[str]) -> dict[str, Any]:
    """The values the pipeline accepts, each checked alone (`BaseParams.check_fields`: the rules between fields are
    the request's, when it is made); each refusal becomes a note in the pipeline's own words."""
    kept: dict[str, Any] = {}
    for name, value in values.items():
        try:
            kept[name] = params.check_fields({name: value})[name]
        except ValueError as e:
            notes.append(f"Not used: {e}.")
    return kept


def _choices(params: type[BaseParams], name: str) -> list[Any]:
    return next((spec["choices"] or [] for spec in params.describe() if spec["name"] == name), [])


def _sampler(name: str, schedule: str, choices: list[Any]) -> str | None:
    """A1111 ≥ 1.9 writes the schedule apart ("DPM++ 2M" + "Schedule type: Karras"); older ones in the name."""
    if schedule and schedule.lower() not in ("automatic", "uniform") and f"{name} {schedule}" in choices:
        return f"{name} {schedule}"
    return name if name in choices else None


def _model(name: str, models: list[str]) -> str | None:
    """The model id A1111's `Model` names: the same id, or a checkpoint file of that name (A1111 drops the suffix)."""
    if name in models:
        return name
    return next((m for m in models if Path(m).stem == name and Path(m).suffix in (".safetensors", ".ckpt")), None)
