"""Records on their own: FTS5 query building, migrations on reopen, paging order, filters and the favourite flag."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.db import Database
from studio.gallery.records import (
    MIGRATIONS,
    ArtworkFilter,
    ArtworkNotFound,
    ArtworkRecord,
    GalleryRecords,
    fts_query,
)
from tests.gallery.conftest import T0, make_recipe


def record(job: str, index: int = 0, count: int = 1, **recipe) -> ArtworkRecord:
    r = make_recipe(job_id=job, index=index, count=count, **recipe)
    return ArtworkRecord(f"{job}-{index}", r, f"images/2024/06/{job}-{index}.png", f"thumbs/{job}-{index}.webp", 8, 8)


@pytest.fixture
def records(tmp_path: Path) -> Iterator[GalleryRecords]:
    db = Database(tmp_path / "gallery.db", MIGRATIONS)
    yield GalleryRecords(db)
    db.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("red fox", '"red" "fox"*'),
        ('say "hi"', '"say" """hi"""*'),
        ("AND (", '"AND"*'),
        ("sd-turbo", '"sd-turbo"*'),
        ('" * - ( ) : ^', None),
        ("", None),
        ("a\x00b", '"a" "b"*'),
    ],
)
def test_fts_query_quotes_every_token(text: str, expected: str | None) -> None:
    assert fts_query(text) == expected


def test_random_user_text_never_breaks_the_search(records: GalleryRecords) -> None:
    records.upsert(record("j1"))
    rng = random.Random(0)
    alphabet = 'ab "*-()^:+{}[],.NEARANDORNOT\x00\t\n\\\'éß🦊'
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert records.count(ArtworkFilter(query=text)) in (0, 1)


def test_upsert_keeps_rowid_favourite_and_search_in_sync(records: GalleryRecords) -> None:
    records.upsert(record("j1"))
    records.set_favourite("j1-0", True)
    stored = records.upsert(record("j1", params={"prompt": "a blue whale"}))
    assert stored.favourite is True
    assert records.count(ArtworkFilter(query="whale")) == 1
    assert records.count(ArtworkFilter(query="fox")) == 0  # the old prompt left the index
    records.delete("j1-0")
    assert records.count(ArtworkFilter(query="whale")) == 0


def test_page_orders_by_time_then_id_and_pages_do_not_overlap(records: GalleryRecords) -> None:
    for i in range(10):
        records.upsert(record(f"j{i}", created_at=T0 + i // 3))  # ties in created_at
    ids = [r.id for r in records.page(ArtworkFilter(), limit=100)]
    assert ids == ["j9-0", "j8-0", "j7-0", "j6-0", "j5-0", "j4-0", "j3-0", "j2-0", "j1-0", "j0-0"]
    pages = [r.id for offset in range(0, 10, 4) for r in records.page(ArtworkFilter(), limit=4, offset=offset)]
    assert pages == ids
    with pytest.raises(ValueError, match="non-negative"):
        records.page(ArtworkFilter(), limit=-1)


def test_a_cursor_page_starts_after_the_last_artwork_seen_even_when_new_ones_arrive(records: GalleryRecords) -> None:
    for i in range(6):
        records.upsert(record(f"j{i}", created_at=T0 + i // 2))  # ties in created_at
    first = records.page(ArtworkFilter(), limit=3)
    assert [r.id for r in first] == ["j5-0", "j4-0", "j3-0"]
    records.upsert(record("new", created_at=T0 + 10))  # would shift an offset-based second page
    last = first[-1]
    rest = records.page(ArtworkFilter(), limit=10, before=(last.recipe.created_at, last.id))
    assert [r.id for r in rest] == ["j2-0", "j1-0", "j0-0"]
    assert records.page(ArtworkFilter(owner="nobody"), limit=10, before=(T0 + 5, "x")) == []


def test_missing_ids_raise_artwork_not_found(records: GalleryRecords) -> None:
    for call in (records.get, records.delete, lambda i: records.set_favourite(i, True)):
        with pytest.raises(ArtworkNotFound, match="no artwork nope"):
            call("nope")


def test_reopening_keeps_rows_and_does_not_remigrate(tmp_path: Path) -> None:
    db = Database(tmp_path / "g.db", MIGRATIONS)
    GalleryRecords(db).upsert(record("j1"))
    db.close()
    reopened = Database(tmp_path / "g.db", MIGRATIONS)
    assert reopened.query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
    assert GalleryRecords(reopened).get("j1-0").recipe.job_id == "j1"
    reopened.close()


def test_every_combination_of_filters_pages_and_counts_as_a_plain_filter_would(records: GalleryRecords) -> None:
    rng = random.Random(3)
    models = {"m1": "p", "m2": "p", "m3": "q"}  # each model belongs to one generator
    made = []
    for i in range(120):
        model = rng.choice(sorted(models))
        stored = records.upsert(record(f"j{i:03d}", owner=rng.choice("ab"), pipeline=models[model], model=model,
                                       created_at=T0 + rng.randint(0, 40),  # ties in created_at
                                       params={"prompt": rng.choice(["a red fox", "an owl", "a fox at night"])}))
        if rng.random() < 0.2:
            stored = records.set_favourite(stored.id, True)
        made.append(stored)
    newest_first = sorted(made, key=lambda r: (r.recipe.created_at, r.id), reverse=True)
    for owner, pipeline, model, favourite, query in itertools.product(
        (None, "a"), (None, "p", "q"), (None, "m1", "m3"), (None, True, False), (None, "fox")
    ):
        filters = ArtworkFilter(owner, pipeline, model, favourite, query)
        expected = [
            r.id for r in newest_first
            if owner in (None, r.recipe.owner) and pipeline in (None, r.recipe.pipeline)
            and model in (None, r.recipe.model) and favourite in (None, r.favourite)
            and (query is None or "fox" in r.recipe.prompt)
        ]
        assert records.count(filters) == len(expected), filters
        assert [r.id for r in records.page(filters, limit=200)] == expected, filters
        assert [r.id for r in records.page(filters, limit=5, offset=3)] == expected[3:8], filters
        if len(expected) > 4:
            seen = next(r for r in made if r.id == expected[3])
            after = records.page(filters, limit=200, before=(seen.recipe.created_at, seen.id))
            assert [r.id for r in after] == expected[4:], filters


def test_a_gallery_made_before_the_filter_indexes_is_migrated_and_keeps_everything(tmp_path: Path) -> None:
    old = Database(tmp_path / "g.db", MIGRATIONS[:1])  # a gallery.db as the first release wrote it
    GalleryRecords(old).upsert(record("j1", params={"prompt": "a red fox"}))
    GalleryRecords(old).upsert(record("j2", pipeline="gan", model="dcgan-faces", created_at=T0 + 1))
    GalleryRecords(old).set_favourite("j1-0", True)
    old.close()
    db = Database(tmp_path / "g.db", MIGRATIONS)
    try:
        assert db.query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        indexes = {row[0] for row in db.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert {"artworks_owner_pipeline_created", "artworks_model_created", "artworks_files"} <= indexes
        migrated = GalleryRecords(db)
        assert migrated.get("j1-0").favourite is True
        assert [r.id for r in migrated.page(ArtworkFilter(pipeline="gan"), limit=10)] == ["j2-0"]
        assert migrated.count(ArtworkFilter(owner="local", model="sd-turbo", query="fox")) == 1
        assert migrated.all_files() == {"j1-0": ("images/2024/06/j1-0.png", "thumbs/j1-0.webp"),
                                        "j2-0": ("images/2024/06/j2-0.png", "thumbs/j2-0.webp")}
    finally:
        db.close()
