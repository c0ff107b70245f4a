"""Model entries, the catalogue's records of one model each, and the folder scans that make them.

A leaf of the model library: it imports no other pipelines module, so the pipelines, the hub sources and the
catalogue all build on it without importing one another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ModelEntry:
    id: str
    kind: str  # the pipeline kind that loads it
    source: str  # what Pipeline.load receives: a folder, a file, or a hub id
    origin: str  # "bundled" | "package" | "hub" | "local" | "plugin"
    licence: str = "unknown"
    restriction: str = ""  # shown in the UI beside the model when its licence limits use (e.g. non-commercial)
    size_bytes: int | None = None  # on disk; None when not downloaded yet
    description: str = ""
    hash: str | None = None  # short content hash, recorded with each image
    status: str = "installed"  # or e.g. "downloads on first use"; see `refusal` for models that cannot load
    refusal: str = ""  # why this model will not be loaded (e.g. a pickle checkpoint without --allow-pickle)
    load_options: Mapping[str, Any] = field(default_factory=dict)  # extra keyword arguments for Pipeline.load
    # params this model is meant to run with (its card's size, steps, guidance): a tab fills them in when the model
    # is picked; other params keep the user's values
    defaults: Mapping[str, Any] = field(default_factory=dict)


def model_card_facts(folder: Path) -> dict[str, str]:
    """`licence:`, `restriction:` and `description:` lines of the front matter (between `---` lines) that opens a
    model folder's MODEL_CARD.md; empty when there is no card or no front matter."""
    card = folder / "MODEL_CARD.md"
    try:
        lines = card.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    found: dict[str, str] = {}
    if not lines or lines[0].strip() != "---":
        return found
    for line in lines[1:]:
        if line.strip() == "---":
            break
        key, _, value = line.partition(":")
        if key.strip() in ("licence", "restriction", "description"):
            found[key.strip()] = value.strip()
    return found


def read_model_config(folder: Path) -> dict[str, Any] | None:
    """A model folder's config.json as a dict; None when it is missing, unreadable or not a JSON object."""
    try:
        config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def tree_size(path: Path) -> int:
    """Bytes of every file under `path` (0 when it is not a folder)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


# What a pipeline says about one model folder it recognises: the entry's own fields (at least `description`,
# used when the folder has no card), or None for a folder it does not load.
FolderCheck = Callable[[Path, dict[str, Any]], dict[str, Any] | None]


def folder_models(root: Path, kind: str, origin: str, check: FolderCheck) -> list[ModelEntry]:
    """An entry for each folder of `root` whose config.json `check` accepts, in name order; the licence,
    restriction and description of its MODEL_CARD.md front matter win over the defaults."""
    if not root.is_dir():
        return []
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        config = read_model_config(folder)
        fields = check(folder, config) if config is not None else None
        if fields is None:
            continue
        card = model_card_facts(folder)
        entries.append(ModelEntry(**{
            "id": folder.name, "kind": kind, "source": str(folder), "origin": origin,
            "licence": "unknown (see the model's own files)", "size_bytes": tree_size(folder), **fields, **card}))
    return entries
