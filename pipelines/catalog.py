"""The model catalogue: which pipelines exist and which models each can load, with source, size and licence.

Pipelines register by kind. Models come from the bundled assets, installed packages, a models folder and
plugin modules; each entry says where its weights are and under which licence they may be used. The
studio resolves a job's model here before enqueueing, so an unknown model never reaches a worker.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable
from pathlib import Path

from pipelines.base import Pipeline
from pipelines.model_entries import ModelEntry
from pipelines.model_sources import HUB_ID, hub_entry

logger = logging.getLogger(__name__)

# The four generators of the studio, in tab order, and where each pipeline class lives once it exists.
CORE_PIPELINES = {
    "text_to_image": "pipelines.text_to_image:TextToImagePipeline",
    "gan": "pipelines.gan:GanPipeline",
    "vae": "pipelines.vae:VaePipeline",
    "style_transfer": "pipelines.style_transfer:StyleTransferPipeline",
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
    """Pipelines by kind and models by id. Built once per process; `refresh()` rescans model sources."""

    def __init__(self, *, plugins: Iterable[str] = (), models_dir: Path | None = None,
                 allow_pickle: bool = False) -> None:
        self._plugins = tuple(plugins)
        self.models_dir = models_dir
        self.allow_pickle = allow_pickle
        self._pipelines: dict[str, type[Pipeline]] = {}
        self._models: dict[str, ModelEntry] = {}  # the listed ones
        self.refresh()

    def refresh(self) -> None:
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
        for kind in CORE_PIPELINES:
            if kind in pipelines:
                models += pipelines[kind].list_models(models_dir=self.models_dir, allow_pickle=self.allow_pickle)
        self._pipelines = pipelines
        self._models = {m.id: m for m in models}
        logger.info("catalogue: %d pipelines (%s), %d models", len(pipelines), ", ".join(pipelines), len(models))

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

    def models(self, kind: str | None = None) -> list[ModelEntry]:
        """Models ready to run first (installed, then downloaded), then those that would download; among
        equals, those free for any use before licence-restricted ones, then the user's own (--models-dir)
        before the bundled ones. The first is a tab's default."""
        ready = {"installed": 0, "downloaded": 1}
        listed = [m for m in self._models.values() if kind is None or m.kind == kind]
        return sorted(listed, key=lambda m: (bool(m.refusal), ready.get(m.status, 2), bool(m.restriction),
                                             m.origin != "local"))

    def default_model(self, kind: str) -> ModelEntry | None:
        """What a tab or a request that names no model uses: the first listed model that is not refused."""
        return next((m for m in self.models(kind) if not m.refusal), None)

    def model(self, model_id: str, kind: str | None = None, *, any_hub_id: bool = True) -> ModelEntry:
        """The entry for `model_id`: a listed model, or (with `any_hub_id`) any hub id for text-to-image (the
        default) or a VAE, fetched on first use. A hub id is looked up for this request only, never added to
        the lists: one user's typing must not fill every user's model lists. Raises UnknownModel, or ValueError
        with the reason for a model that is listed but refused."""
        entry = self._models.get(model_id)
        hub_kind = kind or "text_to_image"
        hub_models = any_hub_id and hub_kind in ("text_to_image", "vae") and hub_kind in self._pipelines
        if entry is None and hub_models and HUB_ID.match(model_id):
            entry = hub_entry(model_id, kind=hub_kind)
        if entry is None or (kind is not None and entry.kind != kind):
            if not any_hub_id and HUB_ID.match(model_id):
                raise UnknownModel(model_id, kind, [m.id for m in self.models(kind)],
                                   "this studio downloads only the models it lists (--allow-any-hub-model)")
            raise UnknownModel(model_id, kind, [m.id for m in self.models(kind)])
        if entry.refusal:
            raise ValueError(entry.refusal)
        return entry

