"""The gallery's files on disk: where they live, and writing them atomically.

Layout under the store root:
    images/<YYYY>/<MM>/<id>.png   the artwork, with its metadata chunks (month of the recipe's created_at, UTC)
    thumbs/<id>.webp              a preview, longest side 256 px

A write goes to a hidden temp file next to its target, is fsynced, then renamed over the target with
os.replace and the directory is fsynced: a reader (or a crash) sees the old file or the new one, never half
of one. Temp files left by a crash are named `.<target name>.<random>.tmp`; reconcile removes them.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from PIL import Image
from PIL.PngImagePlugin import PngInfo

logger = logging.getLogger(__name__)

IMAGES_DIR = "images"
THUMBS_DIR = "thumbs"
THUMB_SIZE = 256
TEMP_SUFFIX = ".tmp"
# An id becomes a file name; this pattern is the only gate between client input and the filesystem.
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def validate_id(artwork_id: str) -> str:
    """Return `artwork_id` if it is a safe file name stem, else raise ValueError."""
    if not isinstance(artwork_id, str) or not _ID_RE.fullmatch(artwork_id):
        raise ValueError(
            f"invalid artwork id {artwork_id!r}: expected 1-128 letters, digits, '_' or '-', starting with a letter "
            "or digit"
        )
    return artwork_id


def image_relpath(artwork_id: str, created_at: float) -> str:
    """POSIX path of the PNG relative to the store root (stored as is in the records)."""
    when = datetime.fromtimestamp(created_at, UTC)
    return f"{IMAGES_DIR}/{when.year:04d}/{when.month:02d}/{validate_id(artwork_id)}.png"


def thumb_relpath(artwork_id: str) -> str:
    return f"{THUMBS_DIR}/{validate_id(artwork_id)}.webp"


def write_png_atomic(path: Path, image: Image.Image, pnginfo: PngInfo | None) -> None:
    """Write `image` as PNG with the given text chunks; `path` ends up complete or untouched."""
    _write_atomic(path, lambda f: image.save(f, format="PNG", pnginfo=pnginfo))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write already-encoded bytes; `path` ends up complete or untouched."""
    _write_atomic(path, lambda f: f.write(data))


def write_thumbnail(path: Path, image: Image.Image, size: int = THUMB_SIZE) -> None:
    """Write a WebP preview whose longest side is `size` (smaller images keep their size), atomically."""
    thumb = image.convert("RGBA" if image.has_transparency_data else "RGB")  # WebP holds only these modes
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)  # never upscales; keeps the aspect ratio
    _write_atomic(path, lambda f: thumb.save(f, format="WEBP", quality=82, method=4))


def _write_atomic(path: Path, write: Callable[[BinaryIO], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
    # os.open with 0o666 (not mkstemp's 0o600) so the result has the permissions of any file the user creates.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable. Windows cannot open a directory for fsync; NTFS journals renames."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_temp_file(path: Path) -> bool:
    return _is_temp_name(path.name)


def _is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(TEMP_SUFFIX) and name != TEMP_SUFFIX


@dataclass(frozen=True)
class Listing:
    """The files found under one of the store's folders: finished ones by POSIX path relative to the store root
    (as records hold them), and the temp files of interrupted writes."""

    files: set[str]
    temp_files: list[Path]


def list_folder(root: Path, folder: str) -> Listing:
    """Every file under `root/folder` (images/ or thumbs/) in one walk, as `rglob` would find them (symlinks to
    files count, symlinked folders are not entered, unreadable ones are skipped) but from os.scandir's entry types
    alone: rglob + is_file builds a Path and makes a stat call per file, seconds for 100,000 artworks."""
    files: set[str] = set()
    temp_files: list[Path] = []
    pending = [folder]
    while pending:
        relative = pending.pop()
        try:
            with os.scandir(root / relative) as scan:
                entries = list(scan)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(f"{relative}/{entry.name}")
                elif entry.is_file():
                    if _is_temp_name(entry.name):
                        temp_files.append(Path(entry.path))
                    else:
                        files.add(f"{relative}/{entry.name}")
            except OSError:
                continue  # removed or unreadable meanwhile: as if it had not been there
    return Listing(files, temp_files)


def iter_temp_files(root: Path) -> Iterator[Path]:
    """Temp files under images/ and thumbs/ (from this module's interrupted writes)."""
    for folder in (IMAGES_DIR, THUMBS_DIR):
        yield from list_folder(root, folder).temp_files


def unlink_quietly(path: Path) -> None:
    """Best-effort removal while cleaning up after another error, which must not be masked."""
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        logger.warning("could not remove %s: %s", path, e)
