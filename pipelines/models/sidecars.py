"""The files other tools keep beside a model: a preview picture, A1111's user metadata (`NAME.json`) and a civitai
helper's `NAME.civitai.info`; with kohya's training tags (in the file's own metadata), what the Models tab shows as
description and trigger words.

Names are looked up in the folder's listing (a set the scan already holds), so a sidecar costs no system call unless
it exists.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pipelines.models.kinds as kinds

PREVIEW_SUFFIXES = (".preview.png", ".png", ".preview.jpg", ".preview.jpeg", ".jpg", ".jpeg", ".preview.webp",
                    ".webp")
MAX_SIDECAR_BYTES = 1024 * 1024
MAX_TRIGGERS = 20


@dataclass(frozen=True)
class Sidecars:
    preview: Path | None = None
    description: str = ""
    triggers: tuple[str, ...] = ()
    family: str = ""  # what the sidecars say the base model is
    problem: str = ""  # a sidecar that could not be read


NO_SIDECARS = Sidecars()


def read_sidecars(folder: Path, stem: str, listing: Set[str]) -> Sidecars:
    """The sidecars of the model `stem` in `folder` whose file names are `listing`."""
    if not any(stem + suffix in listing for suffix in (*PREVIEW_SUFFIXES, ".json", ".civitai.info")):
        return NO_SIDECARS
    preview = next((folder / (stem + s) for s in PREVIEW_SUFFIXES if stem + s in listing), None)
    problems: list[str] = []
    user = _json_object(folder, stem + ".json", listing, problems)
    civitai = _json_object(folder, stem + ".civitai.info", listing, problems)
    activation = user.get("activation text")
    words = [w.strip() for w in activation.split(",")] if isinstance(activation, str) else []
    trained = civitai.get("trainedWords")
    if isinstance(trained, list):
        words += [w.strip() for w in trained if isinstance(w, str)]
    about = user.get("description") or civitai.get("description") or _civitai_name(civitai) or ""
    family = (kinds.family_from_label(str(user.get("sd version", ""))) or
              kinds.family_from_label(str(civitai.get("baseModel", ""))))
    return Sidecars(preview, str(about)[:2000], tuple(dict.fromkeys(w for w in words if w))[:MAX_TRIGGERS], family,
                    "; ".join(problems))


def _json_object(folder: Path, name: str, listing: Set[str], problems: list[str]) -> dict[str, Any]:
    if name not in listing:
        return {}
    path = folder / name
    try:
        if path.stat().st_size > MAX_SIDECAR_BYTES:
            problems.append(f"{name} is over {MAX_SIDECAR_BYTES // 1024} KB: ignored")
            return {}
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        problems.append(f"{name} is not readable JSON ({type(e).__name__}): ignored")
        return {}
    return found if isinstance(found, dict) else {}


def _civitai_name(civitai: Mapping[str, Any]) -> str:
    model = civitai.get("model")
    return str(model.get("name", "")) if isinstance(model, dict) else ""


def kohya_tags(metadata: Mapping[str, str]) -> list[str]:
    """The most frequent training tags of a kohya LoRA (`ss_tag_frequency`: dataset → tag → count)."""
    try:
        datasets = json.loads(metadata.get("ss_tag_frequency", "") or "{}")
    except ValueError:
        return []
    counts: dict[str, int] = {}
    if isinstance(datasets, dict):
        for tags in datasets.values():
            if isinstance(tags, dict):
                for tag, count in tags.items():
                    if isinstance(count, int):
                        counts[str(tag).strip()] = counts.get(str(tag).strip(), 0) + count
    return sorted(counts, key=lambda t: -counts[t])[:MAX_TRIGGERS]
