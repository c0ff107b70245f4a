"""Built-in presets: a few named settings per generator, chosen from the tab's Preset dropdown.

A preset sets only the params it names; the others keep the user's values. Names say what a preset does, so the
dropdown needs no help text. The user's own presets (studio.presets) share the dropdown and may not take these names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

logger = logging.getLogger(__name__)

BUILTIN_PRESETS: Mapping[str, Mapping[str, Mapping[str, Any]]] = {
    "text_to_image": {
        "Draft (fast): 10 steps, 1 image": {"num_steps": 10, "batch_size": 1, "batch_count": 1},
        "Balanced: 20 steps, 2 images": {"num_steps": 20, "batch_size": 2, "batch_count": 1},
        "Detailed: 40 steps, 1 image": {"num_steps": 40, "batch_size": 1, "batch_count": 1},
        "Explore: 15 steps, 4 images": {"num_steps": 15, "batch_size": 4, "batch_count": 1},
    },
    "gan": {
        "Contact sheet: 64 faces in a grid": {"mode": "sample", "num_images": 64, "layout": "grid"},
        "Cleaner faces: truncation 0.7": {"truncation": 0.7},
        "Loop: 4 s morph through the seeds": {"mode": "interpolate", "frames": 48, "fps": 12.0, "loop": True},
        "Variations of one seed: 16": {"mode": "vary", "num_images": 16, "variation": 0.3},
    },
    "vae": {
        "Quick look: 4 samples": {"mode": "sample", "num_images": 4, "temperature": 1.0},
        "Calmer samples: temperature 0.7, 16 images": {"mode": "sample", "num_images": 16, "temperature": 0.7},
        "Morph: 4 s loop": {"mode": "interpolate", "frames": 48, "fps": 12.0, "loop": True},
    },
    "style_transfer": {
        "Quick preview: 256 px": {"size": 256},
        "Print: 1024 px": {"size": 1024},
        "Keep the photo's colours": {"preserve_colors": "luminance"},
        "Faithful (Gatys, 300 iterations)": {"mode": "gatys", "iterations": 300},
    },
}


def builtin_presets(kind: str, fields: set[str]) -> dict[str, Mapping[str, Any]]:
    """The built-in presets of `kind` whose every param is one of `fields` (the tab's controls)."""
    return {name: values for name, values in BUILTIN_PRESETS.get(kind, {}).items() if set(values) <= fields}


def check_settings(specs: list[dict[str, Any]], values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` checked field by field against the Params description (type, choices, range), numbers as their field's
    type; ValueError names the first bad one. Rules that tie fields together (a photo is required, interpolation needs
    two seeds) belong to a request, not to a preset that leaves the photo and the seeds out."""
    by_name = {spec["name"]: spec for spec in specs}
    checked: dict[str, Any] = {}
    for name, value in values.items():
        spec = by_name.get(name)
        if spec is None:
            raise ValueError(f"unknown setting `{name}`")
        kind = spec["type"]
        if kind == "choice" and value not in spec["choices"]:
            raise ValueError(f"`{name}` must be one of {', '.join(map(repr, spec['choices']))}, got {value!r}")
        if kind == "bool" and not isinstance(value, bool):
            raise ValueError(f"`{name}` must be true or false, got {value!r}")
        if kind == "str" and not isinstance(value, str):
            raise ValueError(f"`{name}` must be text, got {type(value).__name__}")
        if kind in ("int", "float"):
            value = _number(name, kind, value, spec.get("minimum"), spec.get("maximum"))
        checked[name] = value
    return checked


def usable_settings(specs: list[dict[str, Any]], values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The values that pass `check_settings` one by one; the others are logged (naming `source`) and left out, so a
    model folder's stray default or a preset saved before a pipeline changed never breaks a tab."""
    usable: dict[str, Any] = {}
    for name, value in values.items():
        try:
            usable.update(check_settings(specs, {name: value}))
        except ValueError as e:
            logger.warning("%s: ignoring %s", source, e)
    return usable


def _number(name: str, kind: str, value: Any, low: float | None, high: float | None) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"`{name}` must be a number, got {value!r}")
    if kind == "int" and not float(value).is_integer():
        raise ValueError(f"`{name}` must be a whole number, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"`{name}` must be between {low} and {high}, got {value}")
    return int(value) if kind == "int" else float(value)
