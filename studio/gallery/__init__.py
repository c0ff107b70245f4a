"""The gallery: artworks as PNG files with their recipe inside, WebP thumbnails, and searchable records.

`GalleryStore` is the API the rest of the studio uses; the other modules are its parts (metadata: Recipe and
the AUTOMATIC1111 `parameters` text; files: layout and atomic writes; records: SQLite + FTS5).
"""

from __future__ import annotations

from studio.gallery.metadata import Recipe, format_parameters, parse_parameters, png_info, read_png_text, read_recipe
from studio.gallery.records import ArtworkNotFound, ArtworkSaveError, GalleryError
from studio.gallery.store import Artwork, GalleryStore, ReconcileReport, artwork_id_for

__all__ = [
    "Artwork",
    "ArtworkNotFound",
    "ArtworkSaveError",
    "GalleryError",
    "GalleryStore",
    "Recipe",
    "ReconcileReport",
    "artwork_id_for",
    "format_parameters",
    "parse_parameters",
    "png_info",
    "read_png_text",
    "read_recipe",
]
