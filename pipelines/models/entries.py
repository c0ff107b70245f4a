"""Model entries, the catalogue's records of one model a pipeline can load, and the readers of model folders."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
BUNDLED_DIR = ASSETS_DIR / "models"  # the models that ship with Atelier, one folder each

@dataclass(frozen=True)
class ModelEntry:
    id: str
    kind: str  # the pipeline kind that loads it
    source: str  # what Pipeline.load receives: a folder, a file, or a hub id
    origin: str  # "bundled" | "package" | "hub" | "local" | "plugin" | "builtin" (no weights: a resampler)
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
    family: str = ""  # the base family (pipelines.models.kinds), where it has one
    sha256: str | None = None  # of its file, once the library has hashed it
    preview: Path | None = None  # a picture beside the file (NAME.preview.png …)
    triggers: tuple[str, ...] = ()  # trigger words its sidecars or training metadata suggest
    path: Path | None = None  # the library file it was made from, when it was

    def recorded(self) -> dict[str, Any]:
        """What a job stores of the entry at submit, so the worker loads exactly this model and the recipe names
        it, whatever a rescan changes meanwhile."""
        return {"id": self.id, "kind": self.kind, "source": self.source, "origin": self.origin,
                "licence": self.licence, "restriction": self.restriction, "size_bytes": self.size_bytes,
                "hash": self.hash, "sha256": self.sha256, "family": self.family,
                "load_options": dict(self.load_options)}

    @classmethod
    def from_recorded(cls, recorded: Mapping[str, Any]) -> ModelEntry:
        fields = {k: v for k, v in recorded.items() if k in cls.__dataclass_fields__}
        return cls(**fields)


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
