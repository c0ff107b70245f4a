"""GalleryStore: files and records stay consistent through add, delete, failures and reconcile."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from studio.gallery import (
    ArtworkNotFound,
    ArtworkSaveError,
    GalleryError,
    GalleryStore,
    ReconcileReport,
    parse_parameters,
)
from studio.gallery.files import write_png_atomic
from studio.gallery.metadata import png_info
from studio.gallery.records import GalleryRecords
from tests.gallery.conftest import T0, make_recipe, noise

JUNE_2024 = "images/2024/06"


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and p.suffix != ".db"
                  and "gallery.db" not in p.name)


def test_add_writes_png_with_both_chunks_thumbnail_and_record(store: GalleryStore) -> None:
    recipe = make_recipe()
    artwork = store.add(noise(640, 480), recipe)
    assert artwork.id == "job1-0"
    assert artwork.path == store.root / JUNE_2024 / "job1-0.png"
    with Image.open(artwork.path) as png:
        assert png.format == "PNG"
        assert parse_parameters(png.text["parameters"])["Seed"] == "42"
        assert json.loads(png.text["atelier"])["job_id"] == "job1"
    with Image.open(artwork.thumb_path) as thumb:
        assert (thumb.format, thumb.size) == ("WEBP", (256, 192))
    stored = store.get("job1-0")
    assert stored == artwork
    assert (stored.recipe, stored.width, stored.height, stored.favourite) == (recipe, 640, 480, False)
    assert (stored.owner, stored.pipeline, stored.model, stored.prompt) == ("local", "text_to_image", "sd-turbo",
                                                                            "a red fox")


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_pixels_round_trip_exactly(store: GalleryStore, mode: str) -> None:
    image = noise(37, 23, mode=mode, seed=7)
    artwork = store.add(image, make_recipe())
    with Image.open(artwork.path) as png:
        assert png.mode == mode
        assert png.tobytes() == image.tobytes()


def test_adding_the_same_job_index_twice_keeps_one_file_and_record(store: GalleryStore) -> None:
    store.add(noise(seed=1), make_recipe())
    store.set_favourite("job1-0", True)
    again = store.add(noise(seed=2), make_recipe(seed=43))
    assert store.count() == 1
    assert files_under(store.root) == [f"{JUNE_2024}/job1-0.png", "thumbs/job1-0.webp"]
    assert (again.recipe.seed, again.favourite) == (43, True)
    with Image.open(again.path) as png:
        assert png.tobytes() == noise(seed=2).tobytes()


def test_rerun_in_another_month_moves_the_file(store: GalleryStore) -> None:
    store.add(noise(), make_recipe())
    moved = store.add(noise(), make_recipe(created_at=T0 + 40 * 86400))
    assert files_under(store.root) == ["images/2024/07/job1-0.png", "thumbs/job1-0.webp"]
    assert store.get("job1-0").path == moved.path


def test_page_newest_first_with_filters_and_count(store: GalleryStore) -> None:
    specs = [("a", "alice", "gan", "dcgan-faces"), ("b", "bob", "text_to_image", "sd-turbo"),
             ("c", "alice", "text_to_image", "sd-turbo"), ("d", "alice", "gan", "dcgan-faces")]
    for i, (job, owner, pipeline, model) in enumerate(specs):
        store.add(noise(8, 8), make_recipe(job_id=job, owner=owner, pipeline=pipeline, model=model,
                                           created_at=T0 + i))
    assert [a.id for a in store.page()] == ["d-0", "c-0", "b-0", "a-0"]
    assert [a.id for a in store.page(owner="alice")] == ["d-0", "c-0", "a-0"]
    assert [a.id for a in store.page(owner="alice", pipeline="gan")] == ["d-0", "a-0"]
    assert [a.id for a in store.page(model="sd-turbo", limit=1, offset=1)] == ["b-0"]
    assert (store.count(), store.count(owner="alice"), store.count(owner="nobody")) == (4, 3, 0)
    assert store.page(owner="nobody") == []


def test_full_text_search_by_prompt_word_prefix_and_model(store: GalleryStore) -> None:
    store.add(noise(8, 8), make_recipe(job_id="fox", params={"prompt": "A red Fox in the snow"}))
    store.add(noise(8, 8), make_recipe(job_id="owl", params={"prompt": "an owl at night"}, model="dcgan-faces",
                                       created_at=T0 + 1))
    assert [a.id for a in store.page(query="fox")] == ["fox-0"]
    assert [a.id for a in store.page(query="sno")] == ["fox-0"]  # prefix on the last word
    assert [a.id for a in store.page(query="red snow")] == ["fox-0"]  # all words, any order
    assert [a.id for a in store.page(query="dcgan")] == ["owl-0"]
    assert [a.id for a in store.page(query="sd-turbo")] == ["fox-0"]
    assert store.count(query="owl", owner="someone-else") == 0
    assert store.count(query="whale") == 0


@pytest.mark.parametrize("hostile", ['"', "AND (", "*", "-", "", "   ", 'fox"', "NEAR(fox owl)", "fox OR", "^fox"])
def test_hostile_queries_do_not_raise(store: GalleryStore, hostile: str) -> None:
    store.add(noise(8, 8), make_recipe(params={"prompt": "fox"}))
    assert store.count(query=hostile) in (0, 1)
    assert len(store.page(query=hostile)) == store.count(query=hostile)


def test_punctuation_only_query_matches_everything(store: GalleryStore) -> None:
    store.add(noise(8, 8), make_recipe())
    assert store.count(query='" * - (') == 1


def test_favourite(store: GalleryStore) -> None:
    store.add(noise(8, 8), make_recipe(job_id="a"))
    store.add(noise(8, 8), make_recipe(job_id="b"))
    assert store.set_favourite("a-0", True).favourite is True
    assert [a.id for a in store.page(favourite=True)] == ["a-0"]
    assert [a.id for a in store.page(favourite=False)] == ["b-0"]
    assert store.set_favourite("a-0", False).favourite is False
    with pytest.raises(ArtworkNotFound):
        store.set_favourite("zzz-0", True)


def test_by_job_in_job_order(store: GalleryStore) -> None:
    for index in (2, 0, 1):
        store.add(noise(8, 8, seed=index), make_recipe(index=index, count=3, seed=100 + index))
    assert [(a.id, a.recipe.seed) for a in store.by_job("job1")] == [("job1-0", 100), ("job1-1", 101),
                                                                     ("job1-2", 102)]
    assert store.by_job("other") == []


def test_delete_removes_record_png_and_thumbnail(store: GalleryStore) -> None:
    artwork = store.add(noise(), make_recipe())
    store.delete(artwork.id)
    assert not artwork.path.exists()
    assert not artwork.thumb_path.exists()
    with pytest.raises(ArtworkNotFound, match="no artwork job1-0"):
        store.get(artwork.id)
    with pytest.raises(ArtworkNotFound):
        store.delete(artwork.id)


def test_delete_keeps_the_record_when_the_png_cannot_be_removed(store: GalleryStore, monkeypatch) -> None:
    artwork = store.add(noise(), make_recipe())
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.suffix == ".png":
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", unlink)
    with pytest.raises(GalleryError, match="cannot delete artwork job1-0"):
        store.delete(artwork.id)
    assert store.get(artwork.id).path.exists()


@pytest.mark.parametrize("bad", ["../etc/passwd", "a/b", "", ".x"])
def test_invalid_ids_are_rejected(store: GalleryStore, bad: str) -> None:
    for call in (store.get, store.delete, lambda i: store.set_favourite(i, True)):
        with pytest.raises(ValueError, match="invalid artwork id"):
            call(bad)


def test_add_rejects_unsafe_job_id_and_unstorable_mode_before_writing(store: GalleryStore) -> None:
    with pytest.raises(ValueError, match="invalid artwork id '../../x-0'"):
        store.add(noise(), make_recipe(job_id="../../x"))
    with pytest.raises(ValueError, match="mode 'CMYK'"):
        store.add(noise().convert("CMYK"), make_recipe())
    with pytest.raises(ValueError, match="mode 'I':"):  # PNG would silently keep only 16 of its 32 bits
        store.add(noise().convert("I"), make_recipe())
    assert files_under(store.root) == []
    assert store.count() == 0


def test_record_failure_leaves_no_files(store: GalleryStore, monkeypatch) -> None:
    def fail(self: GalleryRecords, record: object) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(GalleryRecords, "upsert", fail)
    with pytest.raises(ArtworkSaveError, match="cannot save artwork job1-0: database is locked"):
        store.add(noise(), make_recipe())
    assert files_under(store.root) == []


def test_failed_readd_keeps_the_existing_artworks_files(store: GalleryStore, monkeypatch) -> None:
    existing = store.add(noise(), make_recipe())

    def fail(self: GalleryRecords, record: object) -> None:
        raise ArtworkSaveError("cannot save the record of artwork job1-0: disk I/O error")

    monkeypatch.setattr(GalleryRecords, "upsert", fail)
    with pytest.raises(ArtworkSaveError, match="job1-0"):
        store.add(noise(), make_recipe())
    assert existing.path.exists() and existing.thumb_path.exists()
    assert store.get("job1-0") == existing


def test_thumbnail_failure_removes_the_png(store: GalleryStore, monkeypatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr("studio.gallery.store.write_thumbnail", fail)
    with pytest.raises(ArtworkSaveError, match="job1-0"):
        store.add(noise(), make_recipe())
    assert files_under(store.root) == []
    assert store.count() == 0


def test_reconcile_reindexes_a_png_whose_record_is_missing(store: GalleryStore) -> None:
    recipe = make_recipe(job_id="lost", index=1, count=2, seed=77)
    path = store.root / JUNE_2024 / "lost-1.png"
    write_png_atomic(path, noise(30, 20), png_info(recipe))  # as if the process died before the record
    report = store.reconcile()
    assert (report.indexed, report.removed, report.thumbnails) == (1, 0, 1)
    artwork = store.get("lost-1")
    assert (artwork.recipe, artwork.path, artwork.width, artwork.height) == (recipe, path, 30, 20)
    assert artwork.thumb_path.exists()
    assert store.reconcile().indexed == 0
    assert store.count() == 1


def test_reconcile_reindexes_after_the_row_is_deleted(store: GalleryStore) -> None:
    artwork = store.add(noise(), make_recipe())
    GalleryRecords(store._db).delete(artwork.id)
    assert store.reconcile().indexed == 1
    assert store.get(artwork.id) == artwork


def test_reconcile_removes_a_record_whose_png_is_gone(store: GalleryStore) -> None:
    kept = store.add(noise(), make_recipe(job_id="kept"))
    gone = store.add(noise(), make_recipe(job_id="gone"))
    gone.path.unlink()
    report = store.reconcile()
    assert (report.indexed, report.removed) == (0, 1)
    assert not gone.thumb_path.exists()
    assert [a.id for a in store.page()] == [kept.id]


def test_reconcile_cleans_old_temp_files_but_not_fresh_ones(store: GalleryStore) -> None:
    month = store.root / JUNE_2024
    month.mkdir(parents=True)
    stale, fresh = month / ".x-0.png.0123456789ab.tmp", store.root / "thumbs" / ".y-0.webp.ba9876543210.tmp"
    fresh.parent.mkdir()
    stale.write_bytes(b"\x89PNG half")
    fresh.write_bytes(b"RIFF half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    report = store.reconcile()
    assert report.temp_files == 1
    assert not stale.exists() and fresh.exists()
    assert store.reconcile(temp_min_age_s=0).temp_files == 1
    assert not fresh.exists()


def test_reconcile_leaves_foreign_pngs_alone_and_rebuilds_thumbnails(store: GalleryStore) -> None:
    foreign = store.root / JUNE_2024 / "from-a1111.png"
    foreign.parent.mkdir(parents=True)
    noise().save(foreign)
    renamed = store.root / JUNE_2024 / "renamed-0.png"  # holds the recipe of job1-0, not of renamed-0
    noise().save(renamed, pnginfo=png_info(make_recipe()))
    artwork = store.add(noise(), make_recipe())
    artwork.thumb_path.unlink()
    report = store.reconcile()
    assert (report.indexed, report.removed, report.thumbnails) == (0, 0, 1)
    assert foreign.exists() and renamed.exists() and artwork.thumb_path.exists()
    assert [a.id for a in store.page()] == ["job1-0"]


def test_reconcile_survives_planted_pngs_with_hostile_text(store: GalleryStore) -> None:
    """Reconcile runs at every start: a PNG dropped into the gallery folder must not stop the studio."""
    deep, spaces = PngInfo(), PngInfo()
    deep.add_text("atelier", "[" * 100_000)  # once a RecursionError out of reconcile: the studio did not start
    spaces.add_text("parameters", " " * 150_000)  # A1111's regex took minutes on this; reconcile never parses it
    (store.root / JUNE_2024).mkdir(parents=True)
    for name, info in (("deep-0.png", deep), ("spaces-0.png", spaces)):
        noise().save(store.root / JUNE_2024 / name, pnginfo=info)
    artwork = store.add(noise(), make_recipe())
    assert store.reconcile().indexed == 0
    assert [a.id for a in store.page()] == [artwork.id]


def test_reconcile_opens_only_pngs_whatever_a_planted_file_is_named(store: GalleryStore) -> None:
    """A BMP stands in for an EPS, which Pillow hands to Ghostscript: neither decoder may read a gallery file."""
    artwork = store.add(noise(), make_recipe())
    noise().save(artwork.path, format="BMP")  # replaced under its .png name
    artwork.thumb_path.unlink()
    planted = store.root / JUNE_2024 / "job9-0.png"
    noise().save(planted, format="BMP")
    report = store.reconcile()
    assert (report.indexed, report.thumbnails) == (0, 0) and not artwork.thumb_path.exists()


def test_reconcile_follows_a_png_moved_to_another_folder(store: GalleryStore) -> None:
    artwork = store.add(noise(30, 20), make_recipe())
    moved = store.root / "images/2023/01" / artwork.path.name
    moved.parent.mkdir(parents=True)
    artwork.path.rename(moved)
    report = store.reconcile()
    # the record of the old place goes with its thumbnail; the PNG is indexed where it is, and gets a new one
    assert (report.removed, report.indexed, report.thumbnails) == (1, 1, 1)
    again = store.get(artwork.id)
    assert (again.path, again.recipe, again.width, again.height) == (moved, artwork.recipe, 30, 20)
    assert again.thumb_path.exists()
    assert store.reconcile() == ReconcileReport(indexed=0, removed=0)


def test_reconcile_rebuilds_a_thumbnail_whose_symlink_is_broken(store: GalleryStore, tmp_path: Path) -> None:
    artwork = store.add(noise(), make_recipe())
    artwork.thumb_path.unlink()
    artwork.thumb_path.symlink_to(tmp_path / "gone.webp")
    assert store.reconcile().thumbnails == 1
    with Image.open(artwork.thumb_path) as thumb:
        assert thumb.format == "WEBP"


def test_records_survive_reopening(tmp_path: Path) -> None:
    with GalleryStore(tmp_path / "g") as first:
        artwork = first.add(noise(), make_recipe())
    with GalleryStore(tmp_path / "g") as second:
        assert second.get(artwork.id) == artwork
