"""Animations in the gallery: GIF and MP4 beside the frame sheet, all carrying the recipe, kept consistent."""

from __future__ import annotations

import json
import sqlite3
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from pipelines.base import Animation
from studio.gallery import ArtworkSaveError, GalleryStore
from studio.gallery.media import read_gif_comment
from studio.gallery.records import GalleryRecords
from tests.gallery.conftest import make_recipe, noise
from tests.gallery.test_store import JUNE_2024, files_under


def frames(count: int = 6, size: tuple[int, int] = (32, 24)) -> list[Image.Image]:
    return [noise(*size, seed=i) for i in range(count)]


def animated(store: GalleryStore, count: int = 6, **recipe: object):
    return store.add(noise(seed=99), make_recipe(pipeline="gan", **recipe), Animation(frames(count), 8.0, loop=True))


def test_an_animation_is_stored_as_gif_and_mp4_with_the_recipe_in_each(store: GalleryStore) -> None:
    artwork = animated(store)
    assert set(artwork.media) == {"gif", "mp4"}
    assert files_under(store.root) == [f"{JUNE_2024}/job1-0.gif", f"{JUNE_2024}/job1-0.mp4",
                                       f"{JUNE_2024}/job1-0.png", "thumbs/job1-0.webp"]
    assert artwork.recipe.info["animation"] == {"frames": 6, "fps": 8.0, "loop": True, "formats": ["gif", "mp4"]}
    assert store.get(artwork.id) == artwork
    with Image.open(artwork.media["gif"]) as gif:
        # 8 fps: 125 ms a frame, stored in whole hundredths of a second
        assert (gif.n_frames, gif.size, gif.info["loop"], gif.info["duration"]) == (6, (32, 24), 0, 120)
        gif.seek(2)
        # GIF keeps 256 colours per frame: close to the frame, not equal
        assert np.abs(np.asarray(gif.convert("RGB"), np.int16) - np.asarray(frames()[2], np.int16)).mean() < 40
    assert json.loads(read_gif_comment(artwork.media["gif"]))["job_id"] == "job1"
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(artwork.media["mp4"])], capture_output=True,
                           text=True).stderr
    assert "h264" in probe and "32x24" in probe and '"job_id": "job1"' in probe
    with Image.open(artwork.thumb_path) as thumb:
        assert thumb.format == "WEBP" and thumb.n_frames == 6


def test_an_mp4_needs_even_sides_so_odd_frames_are_padded(store: GalleryStore) -> None:
    artwork = store.add(noise(seed=1), make_recipe(), Animation(frames(3, (33, 17)), 4.0))
    probe = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-i", str(artwork.media["mp4"])], capture_output=True,
                           text=True).stderr
    assert "34x18" in probe


def test_without_ffmpeg_the_gif_alone_is_stored_and_the_recipe_says_so(store: GalleryStore, monkeypatch) -> None:
    monkeypatch.setattr("studio.gallery.store.mp4_available", lambda: False)
    artwork = animated(store)
    assert set(artwork.media) == {"gif"} and artwork.recipe.info["animation"]["formats"] == ["gif"]


def test_delete_removes_the_animation_files(store: GalleryStore) -> None:
    artwork = animated(store)
    store.delete(artwork.id)
    assert files_under(store.root) == []


def test_a_failed_save_leaves_no_animation_files(store: GalleryStore, monkeypatch) -> None:
    def fail(self: GalleryRecords, record: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(GalleryRecords, "upsert", fail)
    with pytest.raises(ArtworkSaveError, match="database is locked"):
        animated(store)
    assert files_under(store.root) == []


def test_a_rerun_in_another_month_moves_the_animation_files_too(store: GalleryStore) -> None:
    animated(store)
    moved = animated(store, created_at=1_720_000_000.0)  # July 2024
    assert files_under(store.root) == ["images/2024/07/job1-0.gif", "images/2024/07/job1-0.mp4",
                                       "images/2024/07/job1-0.png", "thumbs/job1-0.webp"]
    assert moved.media["gif"].exists()


def test_reconcile_restores_an_animation_from_its_png_and_drops_files_of_a_lost_png(store: GalleryStore) -> None:
    artwork = animated(store)
    store.close()
    (store.root / "gallery.db").unlink()
    reopened = GalleryStore(store.root)
    try:
        assert reopened.reconcile().indexed == 1
        assert reopened.get(artwork.id).media == artwork.media
        artwork.thumb_path.unlink()
        assert reopened.reconcile().thumbnails == 1
        with Image.open(artwork.thumb_path) as thumb:
            assert thumb.n_frames == 6  # rebuilt from the GIF: it still moves
        artwork.path.unlink()
        assert reopened.reconcile().removed == 1
        assert files_under(reopened.root) == []
    finally:
        reopened.close()
