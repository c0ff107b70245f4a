"""The Models tab's table and previews: one row per catalogue model (with the generator that loads it) and one per
library file no generator lists yet (LoRAs, embeddings, ControlNets, upscalers, unrecognised files with their
problem), filtered by kind and by words without a rescan.

Rows are built from the catalogue's in-memory lists, so a library of thousands of files lists and filters without
touching the disk. Only the previews shown are read: they lie in the user's model folders, which Gradio does not
serve, so each is opened here with PIL (its size checked before it is decoded) and handed to Gradio as a small
image of its own.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipelines.catalog import Catalog
from pipelines.models import ModelEntry, ModelFile, kinds

logger = logging.getLogger(__name__)

MODEL_COLUMNS = ["Model", "Kind", "Family", "Generator", "Source / folder", "Size", "Hash", "Licence",
                 "Licence limits", "Status", "About"]
ALL = "All"
KIND_CHOICES = [ALL, *kinds.KINDS.values()]  # what the Kind filter offers: display names, in the library's order
KIND_OF_LABEL = {label: kind for kind, label in kinds.KINDS.items()}
LAYOUTS = {"a1111": "A1111/Forge", "comfyui": "ComfyUI", "atelier": "Atelier"}
HASHING = "hashing…"
FILE_LICENCE = "unknown (see where it came from)"

MAX_PREVIEWS = 48  # thumbnails shown at once: each is a file opened, decoded and sent
MAX_PREVIEW_BYTES = 8 * 2**20  # civitai previews run to a few MB; larger is not a preview picture
MAX_PREVIEW_PIXELS = 4096 * 4096  # refused before decoding: a small file can declare a huge picture
THUMB_SIZE = (256, 256)

Thumbnail = tuple[Image.Image, str]  # (picture, caption) as gr.Gallery takes them


@dataclass(frozen=True)
class Row:
    id: str
    kind: str | None  # the file kind (pipelines.models.kinds); None for a plugin's model of no known kind
    cells: tuple[str, ...]  # as MODEL_COLUMNS
    text: str  # what the search box looks in: id, file name, description and trigger words, lower case
    preview: Path | None


@dataclass(frozen=True)
class Listing:
    rows: list[Row]  # those the filter keeps
    total: int  # before the filter
    hashing: int  # files still waiting for their hash
    problems: tuple[str, ...]  # models folders that could not be read

    @property
    def table(self) -> list[list[str]]:
        return [list(r.cells) for r in self.rows]

    @property
    def summary(self) -> str:
        parts = [f"{len(self.rows)} of {self.total} models and files"]
        previews = sum(1 for r in self.rows if r.preview is not None)
        if previews > MAX_PREVIEWS:
            parts.append(f"previews of the first {MAX_PREVIEWS} of {previews}")
        if self.hashing:
            parts.append(f"{self.hashing} file(s) still being hashed: Rescan models shows their hashes")
        return " · ".join(parts) + "".join(f"\n\n⚠ {p}" for p in self.problems)


class ModelLibraryView:
    """What the Models tab shows of a catalogue; keeps the thumbnails it made, so filtering opens only new ones."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.thumbnails = ThumbnailCache()

    def listing(self, kind: str | None = ALL, query: str | None = None) -> Listing:
        """The rows of files of `kind` (a KIND_CHOICES label) whose id, name or description holds `query` (any
        case). ValueError for a kind that is not offered."""
        label = kind or ALL
        if label not in KIND_CHOICES:
            raise ValueError(f"unknown kind of model {label!r}; one of: {', '.join(KIND_CHOICES)}")
        rows = library_rows(self.catalog)
        words = (query or "").strip().lower()
        wanted = None if label == ALL else KIND_OF_LABEL[label]
        kept = [r for r in rows if (wanted is None or r.kind == wanted) and words in r.text]
        library = self.catalog.library
        problems = tuple(f"models folder {r.path}: {r.problem}" for r in library.roots if r.problem)
        return Listing(kept, len(rows), library.hashing, problems)

    def previews(self, rows: Sequence[Row]) -> list[Thumbnail]:
        """Thumbnails of the first MAX_PREVIEWS rows' previews, captioned with the model's id; a preview that
        cannot be read is left out."""
        shown: list[Thumbnail] = []
        seen: set[Path] = set()
        for row in rows:
            if row.preview is None or row.preview in seen:
                continue
            seen.add(row.preview)
            picture = self.thumbnails.get(row.preview)
            if picture is not None:
                shown.append((picture, row.id))
            if len(seen) >= MAX_PREVIEWS:
                break
        return shown


def library_rows(catalog: Catalog) -> list[Row]:
    """Every catalogue model, grouped by generator in tab order, then every library file no generator lists, grouped
    by kind in the library's order."""
    library = catalog.library
    pending = library.hashing > 0
    files = catalog.files()
    by_path = {f.path: f for f in files}
    order = {kind: i for i, kind in enumerate(catalog.kinds)}
    shown = [m for m in catalog.models() if m.origin != "builtin"]  # the resamplers are code, not models
    models = sorted(shown, key=lambda m: order.get(m.kind, len(order)))
    listed = {m.path for m in models if m.path is not None}
    rows = [_model_row(m, by_path.get(m.path) if m.path else None, catalog.has_pipeline(m.kind), pending,
                       catalog.pipeline(m.kind).model_kind if catalog.has_pipeline(m.kind) else None)
            for m in models]
    kind_order = {kind: i for i, kind in enumerate(kinds.KINDS)}
    unlisted = sorted((f for f in files if f.path not in listed), key=lambda f: kind_order.get(f.kind, 99))
    return rows + [_file_row(f, library.short_hash(f), pending) for f in unlisted]


def _model_row(m: ModelEntry, file: ModelFile | None, installed: bool, pending: bool, model_kind: str | None) -> Row:
    kind = file.kind if file is not None else model_kind or None
    if not installed:
        status = "pipeline not installed"
    elif m.refusal:
        status = f"⚠ refused: {file.problem if file is not None and file.problem else m.refusal}"
    else:
        status = m.status
    about = m.description or (file.about if file is not None else "")
    triggers = m.triggers or (file.triggers if file is not None else ())
    cells = (m.id, _kind_name(kind), _family(m.family or (file.family if file is not None else "")), m.kind,
             _source(m.origin, file), _size(m.size_bytes), _hash(m.hash, file, pending), m.licence,
             m.restriction or "—", _with_note(status, file), _about(about, triggers))
    name, preview = (file.name, file.preview) if file is not None else ("", None)
    return Row(m.id, kind, cells, _search_text(m.id, name, about, triggers), m.preview or preview)


def _file_row(f: ModelFile, short_hash: str | None, pending: bool) -> Row:
    status = f"⚠ {f.problem}" if f.problem else _with_note("installed", f)
    cells = (f.id, _kind_name(f.kind), _family(f.family), "—", _source(f.origin, f), _size(f.size),
             _hash(short_hash, f, pending), FILE_LICENCE, "—", status, _about(f.about, f.triggers))
    return Row(f.id, f.kind, cells, _search_text(f.id, f.name, f.about, f.triggers), f.preview)


def _kind_name(kind: str | None) -> str:
    return "—" if kind is None else kinds.KINDS.get(kind, kind)


def _family(family: str) -> str:
    return kinds.FAMILIES.get(family, family) or "—"


def _source(origin: str, file: ModelFile | None) -> str:
    """Where a model comes from: "bundled", "hub", "package"…, or for the user's own files the layout and folder."""
    if file is None or origin != "local":
        return origin
    return f"{LAYOUTS.get(file.layout, file.layout)}: {file.path.parent}"


def _hash(short: str | None, file: ModelFile | None, pending: bool) -> str:
    """The short hash; "hashing…" while the background hasher may still have the file to do (a diffusers folder
    and a file that cannot be used are never hashed)."""
    if short:
        return short
    if pending and file is not None and not file.problem and file.format != "diffusers":
        return HASHING
    return "—"


def _with_note(status: str, file: ModelFile | None) -> str:
    return f"{status}; {file.note}" if file is not None and file.note else status


def _about(text: str, triggers: Sequence[str]) -> str:
    words = f"triggers: {', '.join(triggers)}" if triggers else ""
    return " · ".join(part for part in (text, words) if part)


def _search_text(*parts: str | Sequence[str]) -> str:
    return " ".join(p if isinstance(p, str) else " ".join(p) for p in parts).lower()


def _size(size_bytes: int | None) -> str:
    if size_bytes is None:
        return "—"
    if size_bytes >= 1e9:
        return f"{size_bytes / 1e9:.2f} GB"
    return f"{size_bytes / 1e6:.1f} MB" if size_bytes >= 1e5 else f"{size_bytes / 1e3:.1f} kB"


class ThumbnailCache:
    """Thumbnails by (path, size, modification time): a changed file is read again, an unchanged one never. A
    preview that cannot be shown is remembered too, so a broken file is not reopened at every keystroke."""

    def __init__(self, keep: int = 2 * MAX_PREVIEWS) -> None:
        self.keep = keep
        self._made: OrderedDict[tuple[str, int, int], Image.Image | None] = OrderedDict()
        self._lock = threading.Lock()  # Gradio runs events in several threads

    def get(self, path: Path) -> Image.Image | None:
        try:
            stat = path.stat()
        except OSError:
            return None
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        with self._lock:
            if key in self._made:
                self._made.move_to_end(key)
                return self._made[key]
        picture = thumbnail(path, stat.st_size)
        with self._lock:
            self._made[key] = picture
            while len(self._made) > self.keep:
                self._made.popitem(last=False)
        return picture


def thumbnail(path: Path, size_bytes: int) -> Image.Image | None:
    """A picture of at most THUMB_SIZE made from the preview at `path`; None for a file too large, a picture of
    too many pixels (known from its header, before decoding) or one that cannot be decoded."""
    if size_bytes > MAX_PREVIEW_BYTES:
        logger.info("preview %s: %d bytes, over %d: not shown", path, size_bytes, MAX_PREVIEW_BYTES)
        return None
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PREVIEW_PIXELS:
                logger.info("preview %s: %dx%d pixels, too many: not shown", path, width, height)
                return None
            image.draft("RGB", THUMB_SIZE)  # a JPEG decodes straight at a fraction of its size
            image.thumbnail(THUMB_SIZE)
            alpha = "A" in image.getbands() or "transparency" in image.info
            return image.convert("RGBA" if alpha else "RGB")
    except Exception as e:  # PIL's decoders raise many kinds of error on a damaged or crafted file
        logger.info("preview %s cannot be read: %s: %s", path, type(e).__name__, e)
        return None
