"""Built-in presets: a few named settings per generator, chosen from the tab's Preset dropdown.

A preset sets only the params it names; the others keep the user's values. Names say what a preset does, so the
dropdown needs no help text. The user's own presets (studio.presets) share the dropdown and may not take these names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pipelines.base import BaseParams

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


def usable_settings(params: type[BaseParams], values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """The values the pipeline's params accept one by one (`BaseParams.check_fields`); the others are logged (naming
    `source`) and left out, so a model folder's stray default or a preset saved before a pipeline changed never
    breaks a tab."""
    usable: dict[str, Any] = {}
    for name, value in values.items():
        try:
            usable.update(params.check_fields({name: value}))
        except ValueError as e:
            logger.warning("%s: ignoring %s", source, e)
    return usable
