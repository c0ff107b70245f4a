"""The model catalogue: which pipelines exist and which models each can load, with source, size and licence.

Pipelines register by kind. Models come from the model library (the bundled folders and the user's
`--models-dir` folders), installed packages and plugin modules; each pipeline says which it loads, and whether
it takes any hub id. The studio resolves a job's model here before enqueueing, so an unknown model never
reaches a worker.
"""

from __future__ import annotations

import importlib
import logging
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from pipelines.base import Pipeline
from pipelines.models import Library, ModelEntry, ModelFile
from pipelines.models.hashes import SHORT
from pipelines.models.hub import HUB_ID

logger = logging.getLogger(__name__)

# The generators of the studio, in tab order, and where each pipeline class lives once it exists: the four that
# make pictures, then upscaling, which finishes any of theirs.
CORE_PIPELINES = {
    "text_to_image": "pipelines.text_to_image:TextToImagePipeline",
    "gan": "pipelines.gan:GanPipeline",
    "vae": "pipelines.vae:VaePipeline",
    "style_transfer": "pipelines.style_transfer:StyleTransferPipeline",
    "upscale": "pipelines.upscale:UpscalePipeline",
}


class UnknownPipeline(ValueError):
    def __init__(self, kind: str, known: Iterable[str]) -> None:
        super().__init__(f"unknown pipeline {kind!r}; available: {', '.join(sorted(known)) or 'none'}")


class UnknownModel(ValueError):
    def __init__(self, model: str, kind: str | None, known: Iterable[str], why: str = "") -> None:
        where = f" for {kind}" if kind else ""
        names = ", ".join(sorted(known)) or "none installed"
        super().__init__(f"unknown model {model!r}{where}{f' ({why})' if why else ''}; available: {names}")


def pipeline_path(cls: type[Pipeline]) -> str:
    """"module:QualName" of a pipeline class, so a worker in another process can import it."""
    return f"{cls.__module__}:{cls.__qualname__}"


def import_pipeline(path: str) -> type[Pipeline]:
    module_name, _, qualname = path.partition(":")
    obj: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Pipeline)):
        raise TypeError(f"{path} is not a Pipeline class")
    return obj


class Catalog:
    """Pipelines by kind and models by id. Built once per process; `refresh()` rescans the model library."""

    def __init__(self, *, plugins: Iterable[str] = (), models_dirs: Iterable[Path] = (),
                 allow_pickle: bool = False, hash_db: Path | None = None) -> None:
        self._plugins = tuple(plugins)
        self.library = Library(models_dirs, allow_pickle=allow_pickle, hash_db=hash_db)
        self._pipelines: dict[str, type[Pipeline]] = {}
        self._models: dict[str, ModelEntry] = {}  # the listed ones
        self._refreshing = threading.Lock()
        self._last_started = -math.inf
        self.refresh()

    def refresh(self) -> None:
        """Rescan the pipelines and the library. Callers at the same time share one rescan: a call that waited for
        another to finish returns if that one started after it was made (many users pressing Rescan cost one)."""
        asked = time.monotonic()
        with self._refreshing:
            if self._last_started > asked:
                return
            self._last_started = time.monotonic()
            self._refresh()

    def _refresh(self) -> None:
        pipelines: dict[str, type[Pipeline]] = {}
        models: list[ModelEntry] = []
        for kind, path in CORE_PIPELINES.items():
            try:
                pipelines[kind] = import_pipeline(path)
            except ModuleNotFoundError as e:
                if e.name != path.partition(":")[0]:
                    raise  # the pipeline exists but one of its own imports is missing: that is a real error
        for module_name in self._plugins:
            module = importlib.import_module(module_name)
            for cls in getattr(module, "PIPELINES", ()):
                pipelines[cls.kind] = cls
            models += list(getattr(module, "MODELS", ()))
        self.library.scan({name: kind for cls in pipelines.values() for name, kind in cls.folder_classes().items()})
        for cls in pipelines.values():
            models += cls.list_models(self.library)
        self._pipelines = pipelines
        self._models = {m.id + "\0" + m.kind: m for m in models}
        logger.info("catalogue: %d pipelines (%s), %d models; library: %d files", len(pipelines),
                    ", ".join(pipelines), len(models), len(self.library.files()))

    @property
    def kinds(self) -> list[str]:
        """Every kind with a tab: the four core generators (installed or not) and plugin pipelines."""
        return list(CORE_PIPELINES) + [k for k in self._pipelines if k not in CORE_PIPELINES]

    def has_pipeline(self, kind: str) -> bool:
        return kind in self._pipelines

    def pipeline(self, kind: str) -> type[Pipeline]:
        try:
            return self._pipelines[kind]
        except KeyError:
            raise UnknownPipeline(kind, self._pipelines) from None

    def takes_hub_ids(self, kind: str) -> bool:
        """Whether the pipeline of `kind` loads any hub id a request names."""
        return kind in self._pipelines and self._pipelines[kind].hub_ids

    def models(self, kind: str | None = None) -> list[ModelEntry]:
        """Models ready to run first (installed, then downloaded), then those that would download; among
        equals, those free for any use before licence-restricted ones, then the user's own (--models-dir)
        before the bundled ones. The first is a tab's default."""
        ready = {"installed": 0, "downloaded": 1}
        listed = [self._hashed(m) for m in self._models.values() if kind is None or m.kind == kind]
        return sorted(listed, key=lambda m: (bool(m.refusal), ready.get(m.status, 2), bool(m.restriction),
                                             m.origin != "local"))

    def files(self, kind: str | None = None) -> list[ModelFile]:
        """Every file of the library (of one kind of model file), whether a pipeline loads it yet or not."""
        return self.library.files(kind)

    def default_model(self, kind: str) -> ModelEntry | None:
        """What a tab or a request that names no model uses: the first listed model that is not refused."""
        return next((m for m in self.models(kind) if not m.refusal), None)

    def model(self, model_id: str, kind: str | None = None, *, any_hub_id: bool = True) -> ModelEntry:
        """The entry for `model_id`: a listed model, or (with `any_hub_id`) any hub id for a pipeline that takes
        them (text-to-image when no kind is given), fetched on first use. A hub id is looked up for this request
        only, never added to the lists: one user's typing must not fill every user's model lists. Raises
        UnknownModel, or ValueError with the reason for a model that is listed but refused."""
        hub_kind = kind or "text_to_image"
        entry = self._find(model_id, kind)
        if entry is None and any_hub_id and self.takes_hub_ids(hub_kind) and HUB_ID.match(model_id):
            entry = self.pipeline(hub_kind).hub_model(model_id)
        if entry is None:
            if not any_hub_id and HUB_ID.match(model_id):
                raise UnknownModel(model_id, kind, [m.id for m in self.models(kind)],
                                   "this studio downloads only the models it lists (--allow-any-hub-model)")
            raise UnknownModel(model_id, kind, [m.id for m in self.models(kind)])
        if entry.refusal:
            raise ValueError(entry.refusal)
        return self._hashed(entry)

    def _find(self, model_id: str, kind: str | None) -> ModelEntry | None:
        """A listed entry by id; failing that, a library file's other names (A1111's file name alone, ComfyUI's
        path without extension), resolved by the library, which names both files when a name fits two."""
        found = [m for m in self._models.values() if m.id == model_id and (kind is None or m.kind == kind)]
        if found:
            return found[0]
        by_path = {m.path: m for m in self._models.values() if m.path is not None and (kind is None or m.kind == kind)}
        for file_kind in {f.kind for f in self.library.files() if f.path in by_path}:
            file = self.library.find(file_kind, model_id)
            if file is not None and file.path in by_path:
                return by_path[file.path]
        return None

    def _hashed(self, entry: ModelEntry) -> ModelEntry:
        """The entry with its file's hash, once the background hasher has it."""
        if entry.path is None or entry.sha256:
            return entry
        digest = self.library.sha256(entry.path)
        return replace(entry, sha256=digest, hash=digest[:SHORT]) if digest else entry
