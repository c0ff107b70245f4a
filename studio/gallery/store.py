"""GalleryStore: the one gallery API the studio uses, keeping PNG, thumbnail and record consistent.

Order of writes in `add`: PNG (self-describing, via its `atelier` chunk), then thumbnail, then record. A crash
after the PNG leaves a file that `reconcile` re-indexes from its own chunk; a failure in a later step removes
what the call wrote. Ids are `<job_id>-<index>`, so re-running a job after a crash overwrites, not duplicates.
(The write-file-then-record-and-clean-up pattern follows InvokeAI's image service.)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from studio.db import Database
from studio.gallery.files import (
    IMAGES_DIR,
    THUMB_SIZE,
    THUMBS_DIR,
    image_relpath,
    list_folder,
    thumb_relpath,
    unlink_quietly,
    validate_id,
    write_bytes_atomic,
    write_png_atomic,
    write_thumbnail,
)
from studio.gallery.media import (
    animated_thumbnail,
    animated_thumbnail_of,
    encode_gif,
    encode_mp4,
    mp4_available,
)
from studio.gallery.metadata import Recipe, png_info, read_recipe
from studio.gallery.records import (
    MIGRATIONS,
    ArtworkFilter,
    ArtworkNotFound,
    ArtworkRecord,
    ArtworkSaveError,
    GalleryError,
    GalleryRecords,
)

if TYPE_CHECKING:
    from pipelines.base import Animation

logger = logging.getLogger(__name__)

DB_NAME = "gallery.db"
# Modes PNG stores losslessly. Anything else is the caller's to convert, not ours to guess: Pillow would save CMYK
# or F not at all and 32-bit "I" silently truncated to 16 bits.
PNG_MODES = frozenset({"1", "L", "LA", "I;16", "P", "RGB", "RGBA"})
# What reconcile opens in the gallery folder: only PNGs, whatever a file planted there is named, so no other decoder
# (EPS would hand it to Ghostscript) ever reads one
ARTWORK_FORMATS = ("PNG",)


@dataclass(frozen=True)
class Artwork:
    """One stored image as the studio sees it; paths are absolute."""

    id: str
    recipe: Recipe
    path: Path
    thumb_path: Path
    width: int
    height: int
    favourite: bool
    created_at: float
    media: dict[str, Path] = dataclasses.field(default_factory=dict)  # an animation's files: {"gif": …, "mp4": …}

    @property
    def owner(self) -> str:
        return self.recipe.owner

    @property
    def pipeline(self) -> str:
        return self.recipe.pipeline

    @property
    def model(self) -> str:
        return self.recipe.model

    @property
    def prompt(self) -> str:
        return self.recipe.prompt


@dataclass(frozen=True)
class ReconcileReport:
    """What `reconcile` repaired: PNGs re-indexed, records removed, thumbnails rebuilt, temp files deleted."""

    indexed: int
    removed: int
    thumbnails: int = 0
    temp_files: int = 0


def artwork_id_for(recipe: Recipe) -> str:
    """The id of the image `recipe.index` of job `recipe.job_id`; ValueError if the job id makes it unsafe."""
    return validate_id(f"{recipe.job_id}-{recipe.index}")


class GalleryStore:
    """Artworks under `root`: images/, thumbs/ and gallery.db. Safe to share between the threads of a process."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._db = Database(self.root / DB_NAME, MIGRATIONS)
        self._records = GalleryRecords(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> GalleryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def add(self, image: Image.Image, recipe: Recipe, animation: Animation | None = None) -> Artwork:
        """Store `image` with its recipe (PNG with metadata, thumbnail, record) and return it.

        With an `animation`, `image` is its frame sheet: the frames are also stored as GIF and (when ffmpeg is
        installed) MP4 beside the PNG, the recipe's info lists them, and the thumbnail is animated.
        Raises ValueError for an unstorable image mode or unsafe job id (nothing written) and ArtworkSaveError
        when a write fails (whatever this call wrote is removed again).
        """
        new_id = artwork_id_for(recipe)
        if image.mode not in PNG_MODES:
            raise ValueError(f"cannot store an image of mode {image.mode!r}: convert it to RGB or RGBA first")
        rel = image_relpath(new_id, recipe.created_at)
        png, thumb = self.root / rel, self.root / thumb_relpath(new_id)
        recipe, media = _with_media(recipe, animation)  # encoded before any write: a failure leaves nothing
        info = png_info(recipe)  # before any write: a recipe that cannot be serialized fails here
        previous = self._find(new_id)
        targets = [png, thumb, *(png.with_suffix(f".{fmt}") for fmt in media)]
        existed = {path: path.exists() for path in targets}
        try:
            write_png_atomic(png, image, info)
        except OSError as e:
            raise ArtworkSaveError(f"cannot write the image of artwork {new_id}: {e}") from e
        try:
            for fmt, data in media.items():
                write_bytes_atomic(png.with_suffix(f".{fmt}"), data)
            if animation is not None:
                write_bytes_atomic(thumb, animated_thumbnail(animation.frames, animation.fps, THUMB_SIZE))
            else:
                write_thumbnail(thumb, image)
            record = self._records.upsert(
                ArtworkRecord(new_id, recipe, rel, thumb_relpath(new_id), image.width, image.height)
            )
        except Exception as e:
            # Files that were there before belong to the existing record (same id): leave them to it.
            for path in targets:
                if not existed[path]:
                    unlink_quietly(path)
            if isinstance(e, ArtworkSaveError):
                raise  # the records layer already named the artwork and the cause
            raise ArtworkSaveError(f"cannot save artwork {new_id}: {e}") from e
        if previous is not None and previous.path != rel:
            # A re-run in another month wrote a new path; the record now points there, so the old files go.
            for old in (self.root / previous.path, *_media_paths(self.root / previous.path, previous.recipe)):
                unlink_quietly(old)
        return self._artwork(record)

    @property
    def media_dirs(self) -> list[Path]:
        """The folders holding artworks' files (images, animations, thumbnails): what a browser may be served."""
        return [self.root / IMAGES_DIR, self.root / THUMBS_DIR]

    def get(self, artwork_id: str) -> Artwork:
        """The artwork with this id; ArtworkNotFound if none, ValueError if the id is malformed."""
        return self._artwork(self._records.get(validate_id(artwork_id)))

    def page(
        self, *, owner: str | None = None, pipeline: str | None = None, model: str | None = None,
        favourite: bool | None = None, query: str | None = None, limit: int = 48, offset: int = 0,
        before: tuple[float, str] | None = None,
    ) -> list[Artwork]:
        """Newest first. `query` is free text searched in prompt, negative prompt and model (prefix on the last
        word); any text is safe to pass. `before` = (created_at, id) of an artwork: only those after it."""
        filters = ArtworkFilter(owner, pipeline, model, favourite, query)
        return [self._artwork(r) for r in self._records.page(filters, limit, offset, before)]

    def count(
        self, *, owner: str | None = None, pipeline: str | None = None, model: str | None = None,
        favourite: bool | None = None, query: str | None = None,
    ) -> int:
        return self._records.count(ArtworkFilter(owner, pipeline, model, favourite, query))

    def recipes_containing(self, fragment: str) -> list[str]:
        """The recipes (as JSON) of every artwork whose recipe contains `fragment`."""
        return self._records.recipes_containing(fragment)

    def by_job(self, job_id: str) -> list[Artwork]:
        """The artworks of one job, in job order."""
        return [self._artwork(r) for r in self._records.by_job(job_id)]

    def recent_prompts(self, owner: str, pipeline: str, limit: int = 20) -> list[str]:
        """`owner`'s distinct prompts for `pipeline`, most recently used first (from their latest artworks)."""
        return self._records.recent_prompts(owner, pipeline, limit)

    def set_favourite(self, artwork_id: str, value: bool) -> Artwork:
        return self._artwork(self._records.set_favourite(validate_id(artwork_id), value))

    def delete(self, artwork_id: str) -> None:
        """Remove record, PNG and thumbnail together; if a file cannot be removed the record stays.

        The thumbnail goes first: if the PNG then fails, the record is rolled back and still has its PNG
        (reconcile rebuilds the thumbnail).
        """
        validate_id(artwork_id)
        try:
            with self._db.transaction():
                record = self._records.delete(artwork_id)
                (self.root / record.thumb).unlink(missing_ok=True)
                for path in _media_paths(self.root / record.path, record.recipe):
                    path.unlink(missing_ok=True)
                (self.root / record.path).unlink(missing_ok=True)
        except OSError as e:
            raise GalleryError(f"cannot delete artwork {artwork_id}: {e}") from e

    def reconcile(self, *, temp_min_age_s: float = 60.0) -> ReconcileReport:
        """Bring records and files back in line after a crash or manual file changes.

        - temp files of interrupted writes older than `temp_min_age_s` are deleted (younger ones may belong to
          a write in progress in another process);
        - a record whose PNG is missing is removed, with its thumbnail;
        - a PNG without a record is re-indexed from its `atelier` chunk (files without one are left alone);
        - a missing thumbnail is rebuilt from its PNG.

        It runs at every start, so the check itself is one walk of each folder and one read of the records' paths
        (from an index), compared as sets; only what needs repair costs more. For 100,000 artworks that is under a
        second on two cores, where a Path and a stat per file and three reads of every row took about 7 s.
        """
        images, thumbs = list_folder(self.root, IMAGES_DIR), list_folder(self.root, THUMBS_DIR)
        temp_files = self._remove_temp_files([*images.temp_files, *thumbs.temp_files], temp_min_age_s)
        on_disk = {rel for rel in images.files if rel.endswith(".png")}
        recorded = self._records.all_files()
        removed = self._remove_missing(recorded, on_disk, thumbs.files)
        indexed = self._index_orphans(recorded, on_disk)
        thumbnails = self._restore_thumbnails(recorded, thumbs.files)
        report = ReconcileReport(indexed=indexed, removed=removed, thumbnails=thumbnails, temp_files=temp_files)
        logger.info(
            "gallery reconciled: %d PNGs on disk, %d re-indexed, %d records removed, %d thumbnails rebuilt, "
            "%d temp files deleted", len(on_disk), indexed, removed, thumbnails, temp_files,
        )
        return report

    def _remove_temp_files(self, temp_files: list[Path], min_age_s: float) -> int:
        cutoff, removed = time.time() - min_age_s, 0
        for temp in temp_files:
            try:
                if temp.stat().st_mtime <= cutoff:
                    temp.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # its write finished (or failed and cleaned up) meanwhile
            except OSError as e:
                logger.warning("cannot remove stray temp file %s: %s", temp, e)
        return removed

    def _remove_missing(self, recorded: dict[str, tuple[str, str]], on_disk: set[str], thumbs: set[str]) -> int:
        """Delete the records whose PNG is not on disk; `recorded` and `thumbs` are updated to match."""
        removed = 0
        missing = [(artwork_id, rel) for artwork_id, (rel, _) in recorded.items() if rel not in on_disk]
        for missing_id, rel in missing:
            del recorded[missing_id]
            try:
                record = self._records.delete(missing_id)
            except ArtworkNotFound:
                continue  # deleted meanwhile
            thumbs.discard(record.thumb)
            for path in (self.root / record.thumb, *_media_paths(self.root / rel, record.recipe)):
                unlink_quietly(path)
            logger.warning("artwork %s: its image %s is missing; removed the record", missing_id, rel)
            removed += 1
        return removed

    def _index_orphans(self, recorded: dict[str, tuple[str, str]], on_disk: set[str]) -> int:
        """Re-index the PNGs no record points to; `recorded` gains the records made."""
        known_paths, indexed = {rel for rel, _ in recorded.values()}, 0
        for rel in sorted(on_disk - known_paths):
            png = self.root / rel
            if png.stem in recorded:
                logger.warning("%s duplicates artwork %s stored at %s; left alone", rel, png.stem,
                               recorded[png.stem][0])
                continue
            try:
                record = self._index_file(rel, png)
            except (OSError, ValueError, GalleryError) as e:
                logger.warning("cannot re-index %s: %s", rel, e)
                continue
            if record is not None:
                recorded[record.id] = (record.path, record.thumb)
                indexed += 1
        return indexed

    def _index_file(self, rel: str, png: Path) -> ArtworkRecord | None:
        """Re-create the record of one PNG from its own chunk; None when the file is not an Atelier artwork."""
        validate_id(png.stem)
        recipe = read_recipe(png)
        if recipe is None:
            logger.warning("%s has no Atelier recipe; left alone", rel)
            return None
        if (recorded_id := artwork_id_for(recipe)) != png.stem:
            logger.warning("%s holds the recipe of artwork %s, not %s; left alone", rel, recorded_id, png.stem)
            return None
        with Image.open(png, formats=ARTWORK_FORMATS) as image:
            width, height = image.size
        record = self._records.upsert(ArtworkRecord(png.stem, recipe, rel, thumb_relpath(png.stem), width, height))
        logger.info("re-indexed %s from its recipe", rel)
        return record

    def _restore_thumbnails(self, recorded: dict[str, tuple[str, str]], thumbs: set[str]) -> int:
        """Rebuild missing thumbnails. `thumbs` (the listing) answers for the files it holds; anything else, such
        as a thumbnail outside thumbs/ or a symlink whose target is gone, is asked of the disk."""
        rebuilt = 0
        for thumb_id, (rel, thumb_rel) in recorded.items():
            if thumb_rel in thumbs:
                continue
            thumb = self.root / thumb_rel
            if thumb.exists():
                continue
            try:
                gif = (self.root / rel).with_suffix(".gif")
                if gif.is_file():  # an animation: its thumbnail moves too
                    write_bytes_atomic(thumb, animated_thumbnail_of(gif, THUMB_SIZE))
                else:
                    with Image.open(self.root / rel, formats=ARTWORK_FORMATS) as image:
                        write_thumbnail(thumb, image)
                rebuilt += 1
            except (OSError, ValueError) as e:
                logger.warning("cannot rebuild the thumbnail of artwork %s: %s", thumb_id, e)
        return rebuilt

    def _find(self, artwork_id: str) -> ArtworkRecord | None:
        try:
            return self._records.get(artwork_id)
        except ArtworkNotFound:
            return None

    def _artwork(self, record: ArtworkRecord) -> Artwork:
        return Artwork(
            id=record.id, recipe=record.recipe, path=self.root / record.path, thumb_path=self.root / record.thumb,
            width=record.width, height=record.height, favourite=record.favourite,
            created_at=record.recipe.created_at,
            media={path.suffix[1:]: path for path in _media_paths(self.root / record.path, record.recipe)},
        )


def _with_media(recipe: Recipe, animation: Animation | None) -> tuple[Recipe, dict[str, bytes]]:
    """The recipe with its animation's facts in `info["animation"]`, and the encoded files by format.

    MP4 is best effort (ffmpeg may be missing or refuse a size): the GIF always exists, and the recipe lists
    only the formats that were made. Each file carries the recipe JSON, as the PNG does.
    """
    if animation is None:
        return recipe, {}
    facts = {"frames": len(animation.frames), "fps": animation.fps, "loop": animation.loop}

    def listing(formats: list[str]) -> Recipe:
        return dataclasses.replace(recipe, info={**recipe.info, "animation": {**facts, "formats": formats}})

    media: dict[str, bytes] = {}
    if mp4_available():
        try:
            media["mp4"] = encode_mp4(animation.frames, animation.fps, comment=listing(["gif", "mp4"]).to_json())
        except (OSError, RuntimeError) as e:
            logger.warning("artwork %s: no MP4, ffmpeg failed: %s", artwork_id_for(recipe), e)
    final = listing(["gif", *media])
    media["gif"] = encode_gif(animation.frames, animation.fps, loop=animation.loop, comment=final.to_json())
    return final, media


def _media_paths(png: Path, recipe: Recipe) -> list[Path]:
    """The animation files stored beside an artwork's PNG, as its recipe lists them."""
    animation = recipe.info.get("animation")
    formats = animation.get("formats", []) if isinstance(animation, dict) else []
    return [png.with_suffix(f".{fmt}") for fmt in formats if fmt in ("gif", "mp4")]
