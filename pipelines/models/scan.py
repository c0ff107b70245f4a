"""One pass over the model folders: a ModelFile for every model file and model folder found, each with its kind,
family, metadata and sidecars, or the plain reason it cannot be used. Nothing a folder holds stops the scan."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pipelines.models.kinds as kinds
from pipelines.models.entries import tree_size
from pipelines.models.header import BadModelFile, read_header
from pipelines.models.layouts import Place
from pipelines.models.sidecars import MAX_TRIGGERS, NO_SIDECARS, kohya_tags, read_sidecars
from pipelines.models.sniff import UPSCALER_ABOUT, family_of, kind_of, upscaler_architecture

SAFETENSORS = (".safetensors", ".sft")
PICKLES = (".ckpt", ".pt", ".pth", ".bin")
MAX_DEPTH = 8
PICKLE_REFUSAL = ("a pickle file, which can run code when loaded: convert it to .safetensors, or start Atelier "
                  "with --allow-pickle (it is then loaded with weights_only)")
# folders of diffusers models name their class in config.json; pipelines add their own (e.g. GAN generators)
FOLDER_WEIGHTS = ("diffusion_pytorch_model.safetensors", "model.safetensors")
FOLDER_CLASSES = {"AutoencoderKL": kinds.VAE, "ControlNetModel": kinds.CONTROLNET}


@dataclass(frozen=True)
class ModelFile:
    path: Path
    kind: str  # one of pipelines.models.kinds
    rel: str  # ComfyUI's name: the path under its kind folder, with its extension ("styles/ink.safetensors")
    name: str  # A1111's name: the file name without extension, or the folder's name ("ink")
    format: str  # "safetensors" | "pickle" | "diffusers" (a pipeline folder) | "folder" (one model's folder)
    size: int
    mtime_ns: int
    layout: str = "atelier"
    origin: str = "local"  # or "bundled"
    family: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)  # safetensors `__metadata__`
    config: Mapping[str, Any] = field(default_factory=dict)  # a folder's config.json
    about: str = ""  # what it is, in a few words (from its sidecars, metadata or layout)
    triggers: tuple[str, ...] = ()
    preview: Path | None = None
    vectors: int = 0  # an embedding's number of vectors
    architecture: str = ""  # an upscaler's network, as A1111 names it ("ESRGAN", "Real-ESRGAN compact")
    note: str = ""  # something the user should know (e.g. a LoRA found in the checkpoints folder)
    problem: str = ""  # why it cannot be used; empty when it can
    id: str = ""  # unique among files of its kind: `rel`, or "layout:rel" when two roots hold the same `rel`

    @property
    def weights(self) -> Path | None:
        """The file whose SHA-256 names this model: the file itself, or a model folder's one weights file."""
        if self.problem or self.format == "diffusers":
            return None
        if self.format == "folder":
            return next((self.path / n for n in FOLDER_WEIGHTS if (self.path / n).is_file()), None)
        return self.path


# (path, size, mtime, the folder's kind) → what the file's header said: a warm rescan re-reads no unchanged file
HeaderMemo = dict[tuple[str, int, int, str], "ModelFile"]


class Scan:
    def __init__(self, *, layout: str, origin: str, allow_pickle: bool, folder_classes: Mapping[str, str],
                 memo: HeaderMemo) -> None:
        self.layout, self.origin, self.allow_pickle = layout, origin, allow_pickle
        self.folder_classes = {**FOLDER_CLASSES, **folder_classes}
        self.memo = memo
        self.found: list[ModelFile] = []
        self._seen: set[tuple[int, int]] = set()  # (device, inode) of every folder walked: links cannot loop

    def place(self, place: Place) -> None:
        if place.folder.is_dir():
            self._walk(place.folder, "", place, 0)

    def _walk(self, folder: Path, rel_dir: str, place: Place, depth: int) -> None:
        try:
            stat = folder.stat()
            if (stat.st_dev, stat.st_ino) in self._seen:
                if depth:
                    self._problem(folder, rel_dir.rstrip("/"), place, "a link to a folder already listed (a link "
                                  "loop?): skipped")
                return
            self._seen.add((stat.st_dev, stat.st_ino))
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self._problem(folder, rel_dir.rstrip("/") or folder.name, place,
                          f"cannot read this folder: {e.strerror or e}")
            return
        listing = {e.name for e in entries}
        for entry in entries:
            rel = rel_dir + entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                path = Path(entry.path)
                if _is_checkpoint_config(entry.name, listing):
                    continue  # `model.config/` beside `model.safetensors` is that checkpoint's configuration
                if (path / "model_index.json").is_file() or (path / "config.json").is_file():
                    self._folder(path, rel, place)
                elif depth < MAX_DEPTH:
                    self._walk(path, rel + "/", place, depth + 1)
            elif os.path.splitext(entry.name)[1].lower() in SAFETENSORS + PICKLES:
                self._file(entry, rel, place, listing)

    def _base(self, path: Path, rel: str, kind: str, fmt: str, size: int = 0, mtime: int = 0) -> ModelFile:
        name = path.name if fmt in ("diffusers", "folder") else os.path.splitext(path.name)[0]
        return ModelFile(path, kind, rel, name, fmt, size, mtime, self.layout, self.origin, id=rel)

    def _problem(self, path: Path, rel: str, place: Place, why: str) -> None:
        self.found.append(replace(self._base(path, rel, place.kind or kinds.OTHER, "folder"), problem=why))

    def _file(self, entry: os.DirEntry[str], rel: str, place: Place, listing: set[str]) -> None:
        path = Path(entry.path)
        try:
            stat = entry.stat()
        except OSError as e:
            self.found.append(replace(self._base(path, rel, place.kind or kinds.OTHER, "safetensors"),
                                      problem=f"cannot read it: {e.strerror or e} (a broken link?)"))
            return
        pickle = path.suffix.lower() in PICKLES
        base = self._base(path, rel, place.kind or kinds.OTHER, "pickle" if pickle else "safetensors",
                          stat.st_size, stat.st_mtime_ns)
        if pickle:
            found = replace(base, kind=place.kind or kinds.CHECKPOINT, about="pickle file",
                            problem="" if self.allow_pickle else PICKLE_REFUSAL)
        else:
            found = self._read_safetensors(base, place)
        sidecars = read_sidecars(path.parent, base.name, listing)
        if sidecars == NO_SIDECARS:
            self.found.append(found)
            return
        self.found.append(replace(
            found, preview=sidecars.preview, about=sidecars.description or found.about,
            triggers=tuple(dict.fromkeys(sidecars.triggers + found.triggers))[:MAX_TRIGGERS],
            family=found.family or sidecars.family, note="; ".join(n for n in (found.note, sidecars.problem) if n)))

    def _read_safetensors(self, base: ModelFile, place: Place) -> ModelFile:
        """What the header says, remembered by (path, size, mtime, the folder's kind) for the next scan."""
        key = (str(base.path), base.size, base.mtime_ns, place.kind or "")
        known = self.memo.get(key)
        if known is None:
            known = self.memo[key] = self._from_header(base, place)
        return replace(known, id=base.id, rel=base.rel, layout=base.layout, origin=base.origin)

    def _from_header(self, base: ModelFile, place: Place) -> ModelFile:
        try:
            header = read_header(base.path)
        except BadModelFile as e:
            return replace(base, problem=str(e))
        sniffed = kind_of(header)
        kind, note, problem = sniffed, "", ""
        if sniffed == kinds.OTHER and place.kind:
            kind, note = place.kind, "kind taken from its folder: its tensors match no layout Atelier knows"
        elif sniffed == kinds.OTHER:
            problem = "its tensors match no model layout Atelier knows"
        elif place.kind and sniffed != place.kind:
            note = (f"a {kinds.KINDS[sniffed]} in a folder of {kinds.KINDS[place.kind]}s "
                    f"({place.folder.name}/): listed as a {kinds.KINDS[sniffed]}")
        vectors = header.shapes.get("emb_params") or header.shapes.get("clip_l") or ()
        architecture = upscaler_architecture(header) if kind == kinds.UPSCALER else ""
        about = UPSCALER_ABOUT[architecture] if architecture else header.metadata.get("ss_output_name", "")
        return replace(base, kind=kind, family=family_of(header, kind), metadata=header.metadata, about=about,
                       architecture=architecture,
                       triggers=tuple(kohya_tags(header.metadata)), vectors=vectors[0] if len(vectors) == 2 else 0,
                       note=note, problem=problem)

    def _folder(self, path: Path, rel: str, place: Place) -> None:
        try:
            stat = path.stat()
            index = path / "model_index.json"
            if index.is_file():
                config = _json(index)
                kind, fmt, family = kinds.CHECKPOINT, "diffusers", _diffusers_family(path, config)
            else:
                config = _json(path / "config.json")
                kind = self.folder_classes.get(str(config.get("_class_name")), place.kind or kinds.OTHER)
                fmt, family = "folder", kinds.CONTEXT_WIDTH.get(config.get("cross_attention_dim"), "")
            size = tree_size(path)
        except (OSError, ValueError) as e:
            self._problem(path, rel, place, f"cannot read this model folder: {e}")
            return
        about = "diffusers folder" if fmt == "diffusers" else str(config.get("_class_name", "model folder"))
        problem = "" if kind != kinds.OTHER else f"a folder of {about}, which no generator of this studio loads"
        self.found.append(replace(self._base(path, rel, kind, fmt, size, stat.st_mtime_ns), config=config,
                                  family=family, about=about, problem=problem))


def _is_checkpoint_config(name: str, listing: set[str]) -> bool:
    stem = name[: -len(".config")] if name.endswith(".config") else ""
    return bool(stem) and any(stem + suffix in listing for suffix in SAFETENSORS + PICKLES)


def _json(path: Path) -> dict[str, Any]:
    if path.stat().st_size > 1024 * 1024:
        raise ValueError(f"{path.name} is over 1 MB")
    found = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(found, dict):
        raise ValueError(f"{path.name} is not a JSON object")
    return found


def _diffusers_family(folder: Path, index: Mapping[str, Any]) -> str:
    if "XL" in str(index.get("_class_name", "")):
        return kinds.SDXL
    try:
        width = _json(folder / "unet" / "config.json").get("cross_attention_dim")
    except (OSError, ValueError):
        return ""
    return kinds.CONTEXT_WIDTH.get(width, "") if isinstance(width, int) else ""
