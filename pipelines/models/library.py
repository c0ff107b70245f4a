"""The model library: every model file in the folders a user points Atelier at (`--models-dir`, in Atelier's,
A1111/Forge's or ComfyUI's layout) and the bundled ones, by kind, with names resolved as each studio's users write
them, and hashes computed in the background."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pipelines.models.kinds as kinds
from pipelines.models.entries import BUNDLED_DIR, ModelEntry, model_card_facts
from pipelines.models.hashes import SHORT, HashCache, Hasher, Key, file_key
from pipelines.models.layouts import Root, read_root
from pipelines.models.scan import HeaderMemo, ModelFile, Scan

logger = logging.getLogger(__name__)


class AmbiguousModel(ValueError):
    def __init__(self, name: str, kind: str, matches: Iterable[ModelFile]) -> None:
        listed = "; ".join(f"{m.id} ({m.path})" for m in matches)
        super().__init__(f"{kinds.KINDS[kind]} name {name!r} matches more than one file: {listed}. "
                         "Name one by its id as listed")


class Library:
    """Built once per process; `scan()` reads the folders again (unchanged safetensors headers are not re-read)."""

    def __init__(self, paths: Iterable[Path] = (), *, allow_pickle: bool = False, hash_db: Path | None = None,
                 bundled: Path | None = BUNDLED_DIR) -> None:
        self.paths = tuple(Path(p) for p in paths)
        self.allow_pickle = allow_pickle
        self.bundled = bundled
        self.roots: list[Root] = []
        self._files: list[ModelFile] = []
        self._by_path: dict[Path, ModelFile] = {}
        self._keys: dict[Path, Key] = {}
        self._memo: HeaderMemo = {}
        self.hashes = HashCache(hash_db)
        self._hasher = Hasher(self.hashes)

    def scan(self, folder_classes: Mapping[str, str] = {}) -> None:  # noqa: B006 -- read only
        """Read every root again. `folder_classes` maps the `_class_name` of a model folder's config.json to the
        kind of model it is, for the folders pipelines bring (e.g. a GAN generator)."""
        roots = [r for path in self.paths for r in read_root(path)]
        found: list[ModelFile] = []
        for root, origin in [(r, "local") for r in roots] + self._bundled_roots():
            scan = Scan(layout=root.layout, origin=origin, allow_pickle=self.allow_pickle,
                        folder_classes=folder_classes, memo=self._memo)
            for place in root.places:
                scan.place(place)
            found += scan.found
        alive = {str(f.path) for f in found}
        self._memo = {k: v for k, v in self._memo.items() if k[0] in alive}  # forget files that went away
        self.roots = roots
        self._files = _unique_ids(found)
        self._by_path = {f.path: f for f in self._files}
        self._keys = {}
        for f in self._files:
            weights = f.weights
            if weights == f.path:
                self._keys[weights] = (str(weights), f.size, f.mtime_ns)  # as the scan saw it: no second stat
            elif weights is not None:
                try:
                    self._keys[weights] = file_key(weights)
                except OSError:
                    continue
        self._hasher.wanted((key, path) for path, key in self._keys.items())
        for root in roots:
            if root.problem:
                logger.warning("models folder %s: %s", root.path, root.problem)

    def _bundled_roots(self) -> list[tuple[Root, str]]:
        return [(r, "bundled") for r in read_root(self.bundled)] if self.bundled and self.bundled.is_dir() else []

    def files(self, kind: str | None = None, *, family: str = "") -> list[ModelFile]:
        """Files of `kind` (all kinds when None) that fit `family` (any when empty), in scan order."""
        return [f for f in self._files if (kind is None or f.kind == kind) and kinds.fits(f.family, family)]

    def find(self, kind: str, name: str) -> ModelFile | None:
        """The file of `kind` that `name` means: its id; else its path under its folder with or without the
        extension (ComfyUI's way); else its file name alone (A1111's `<lora:ink:0.8>`). AmbiguousModel when the
        name fits several files, None when it fits none."""
        candidates = [f for f in self._files if f.kind == kind]
        exact = [f for f in candidates if f.id == name]
        if exact:
            return exact[0]
        for matches in ([f for f in candidates if name in (f.rel, _without_suffix(f.rel))],
                        [f for f in candidates if name in (f.name, f.path.name)]):
            if len(matches) == 1:
                return matches[0]
            if matches:
                raise AmbiguousModel(name, kind, matches)
        return None

    def file_at(self, path: Path) -> ModelFile | None:
        return self._by_path.get(Path(path))

    def sha256(self, file: ModelFile | Path) -> str | None:
        """The SHA-256 of a library file (of a model folder's weights), once hashed; None before, for a file the
        library does not hold, or for a folder of several weight files."""
        found = file if isinstance(file, ModelFile) else self._by_path.get(Path(file))
        key = self._keys.get(found.weights) if found is not None and found.weights is not None else None
        return self.hashes.get(key) if key else None

    def short_hash(self, file: ModelFile | Path) -> str | None:
        """A1111's short hash (the first 10 hex digits of the SHA-256), once the file has been hashed."""
        digest = self.sha256(file)
        return digest[:SHORT] if digest else None

    @property
    def hashing(self) -> int:
        """Files still waiting for their hash."""
        return self._hasher.pending

    def close(self) -> None:
        self._hasher.stop()


def folder_entry(file: ModelFile, kind: str, fields: Mapping[str, Any], library: Library) -> ModelEntry:
    """The catalogue entry of a model folder the pipeline of `kind` loads: `fields` (at least a description) with
    its MODEL_CARD.md front matter winning over them."""
    card = model_card_facts(file.path)
    return ModelEntry(**{"id": file.id, "kind": kind, "source": str(file.path), "origin": file.origin,
                         "licence": "unknown (see the model's own files)", "size_bytes": file.size,
                         "family": file.family, "preview": file.preview, "path": file.path,
                         "hash": library.short_hash(file), "sha256": library.sha256(file), **fields, **card})


def _without_suffix(rel: str) -> str:
    head, dot, _ = rel.rpartition(".")
    return head if dot and "/" not in rel[len(head):] else rel


def _unique_ids(found: list[ModelFile]) -> list[ModelFile]:
    """Two files of one kind with the same `rel` in two roots are told apart by their layout (and a number when
    two roots share one layout)."""
    counts = Counter((f.kind, f.rel) for f in found)
    seen: Counter[tuple[str, str]] = Counter()
    unique = []
    for f in found:
        if counts[(f.kind, f.rel)] == 1:
            unique.append(f)
            continue
        label = "bundled" if f.origin == "bundled" else f.layout
        seen[(f.kind, label + f.rel)] += 1
        number = seen[(f.kind, label + f.rel)]
        unique.append(replace(f, id=f"{label}{'' if number == 1 else f'-{number}'}:{f.rel}"))
    return unique
