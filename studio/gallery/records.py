"""Gallery records in SQLite: one row per artwork, newest-first paging, and FTS5 full-text search.

The row mirrors the PNG (whose `atelier` chunk stays authoritative) plus what only the gallery knows: the
favourite flag and where the files are. Search uses an external-content FTS5 table over prompt, negative
prompt and model, kept in sync by triggers, so a write touches one table and the index cannot drift.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from studio.db import Database
from studio.gallery.metadata import Recipe

logger = logging.getLogger(__name__)

MIGRATIONS: list[str] = [
    # 1: artworks + FTS5. Paging orders by (created_at, id) and the indexes end in id, so a page is an index
    # range scan with no sort; favourite has its own because "my favourites" is a page of its own and rare
    # favourites would otherwise mean scanning everything. `seed` is TEXT because torch seeds reach 2**64 - 1,
    # beyond SQLite's INTEGER. `favourite` is only ever changed by set_favourite; upsert keeps it.
    """
    CREATE TABLE artworks (
        id TEXT PRIMARY KEY,
        job_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        owner TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        model TEXT NOT NULL,
        model_hash TEXT,
        prompt TEXT NOT NULL,
        negative_prompt TEXT NOT NULL,
        seed TEXT NOT NULL,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        favourite INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        path TEXT NOT NULL,
        thumb TEXT NOT NULL,
        recipe TEXT NOT NULL
    );
    CREATE INDEX artworks_created ON artworks (created_at, id);
    CREATE INDEX artworks_owner_created ON artworks (owner, created_at, id);
    CREATE INDEX artworks_favourite_created ON artworks (favourite, created_at, id);
    CREATE INDEX artworks_job ON artworks (job_id, idx);
    CREATE VIRTUAL TABLE artworks_fts USING fts5 (
        prompt, negative_prompt, model,
        content = 'artworks', content_rowid = 'rowid', tokenize = 'unicode61 remove_diacritics 2'
    );
    CREATE TRIGGER artworks_fts_insert AFTER INSERT ON artworks BEGIN
        INSERT INTO artworks_fts (rowid, prompt, negative_prompt, model)
        VALUES (new.rowid, new.prompt, new.negative_prompt, new.model);
    END;
    CREATE TRIGGER artworks_fts_delete AFTER DELETE ON artworks BEGIN
        INSERT INTO artworks_fts (artworks_fts, rowid, prompt, negative_prompt, model)
        VALUES ('delete', old.rowid, old.prompt, old.negative_prompt, old.model);
    END;
    CREATE TRIGGER artworks_fts_update AFTER UPDATE OF prompt, negative_prompt, model ON artworks BEGIN
        INSERT INTO artworks_fts (artworks_fts, rowid, prompt, negative_prompt, model)
        VALUES ('delete', old.rowid, old.prompt, old.negative_prompt, old.model);
        INSERT INTO artworks_fts (rowid, prompt, negative_prompt, model)
        VALUES (new.rowid, new.prompt, new.negative_prompt, new.model);
    END;
    """,
    # 2: a filter by generator or model reads an index range in page order, for one user's gallery (owner first)
    # and for a shared one; before, its count read every row, recipes and all (~45 ms per 100k artworks, paid on
    # each page since the Gallery tab shows "page N of M"). `pipeline` trails the model indexes (after the unique
    # id, so the order is unchanged) to count "generator and model" from the index alone. `artworks_files` covers
    # reconcile's id → files read, which otherwise also reads every row (~0.4 s per 100k at startup).
    """
    CREATE INDEX artworks_owner_pipeline_created ON artworks (owner, pipeline, created_at, id);
    CREATE INDEX artworks_owner_model_created ON artworks (owner, model, created_at, id, pipeline);
    CREATE INDEX artworks_pipeline_created ON artworks (pipeline, created_at, id);
    CREATE INDEX artworks_model_created ON artworks (model, created_at, id, pipeline);
    CREATE INDEX artworks_files ON artworks (id, path, thumb);
    """,
]

_COLUMNS = (
    "id, job_id, idx, owner, pipeline, model, model_hash, prompt, negative_prompt, seed, width, height, favourite, "
    "created_at, path, thumb, recipe"
)
# The conflict branch rewrites everything but `favourite` (the user's) and keeps the rowid, so the FTS row
# follows through the update trigger (INSERT OR REPLACE would delete without firing the delete trigger).
_UPSERT = f"""
    INSERT INTO artworks ({_COLUMNS}) VALUES ({", ".join("?" * 17)})
    ON CONFLICT (id) DO UPDATE SET
        job_id = excluded.job_id, idx = excluded.idx, owner = excluded.owner, pipeline = excluded.pipeline,
        model = excluded.model, model_hash = excluded.model_hash, prompt = excluded.prompt,
        negative_prompt = excluded.negative_prompt, seed = excluded.seed, width = excluded.width,
        height = excluded.height, created_at = excluded.created_at, path = excluded.path, thumb = excluded.thumb,
        recipe = excluded.recipe
"""


class GalleryError(RuntimeError):
    """The gallery cannot do what was asked (base of the gallery's own errors)."""


class ArtworkNotFound(GalleryError, KeyError):
    """No artwork has this id. Also a KeyError, so mapping-style callers can catch it as one."""

    def __init__(self, artwork_id: str) -> None:
        super().__init__(f"no artwork {artwork_id}")
        self.artwork_id = artwork_id

    def __str__(self) -> str:  # KeyError.__str__ would repr-quote the message
        return f"no artwork {self.artwork_id}"


class ArtworkSaveError(GalleryError):
    """Writing an artwork's file or record failed; nothing half-written was left behind."""


@dataclass(frozen=True)
class ArtworkRecord:
    """One row. `path` and `thumb` are POSIX paths relative to the store root."""

    id: str
    recipe: Recipe
    path: str
    thumb: str
    width: int
    height: int
    favourite: bool = False


@dataclass(frozen=True)
class ArtworkFilter:
    """Conditions combined with AND; None means "any". `query` is free text from a user."""

    owner: str | None = None
    pipeline: str | None = None
    model: str | None = None
    favourite: bool | None = None
    query: str | None = None


def fts_query(text: str) -> str | None:
    """Turn user text into an FTS5 expression that cannot be a syntax error, or None to match everything.

    Each whitespace-separated token becomes a quoted phrase (FTS5 operators and punctuation lose their
    meaning); the last one is a prefix match so results follow the user's typing. Tokens with no letter or
    digit are dropped: FTS5 tokenizes them to an empty phrase, which would match nothing.
    """
    tokens = [t for t in text.replace("\x00", " ").split() if any(ch.isalnum() for ch in t)]
    if not tokens:
        return None
    phrases = ['"' + t.replace('"', '""') + '"' for t in tokens]
    phrases[-1] += "*"
    return " ".join(phrases)


class GalleryRecords:
    """CRUD and queries over `artworks`. sqlite3 errors on writes become ArtworkSaveError."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def upsert(self, record: ArtworkRecord) -> ArtworkRecord:
        """Insert or replace the row with this id (keeping its favourite flag); return the stored record."""
        recipe = record.recipe
        values = (
            record.id, recipe.job_id, recipe.index, recipe.owner, recipe.pipeline, recipe.model, recipe.model_hash,
            recipe.prompt, recipe.negative_prompt, str(recipe.seed), record.width, record.height,
            int(record.favourite), recipe.created_at, record.path, record.thumb, recipe.to_json(),
        )
        try:
            with self._db.transaction() as conn:
                conn.execute(_UPSERT, values)
                row = conn.execute(f"SELECT {_COLUMNS} FROM artworks WHERE id = ?", (record.id,)).fetchone()
        except sqlite3.Error as e:
            raise ArtworkSaveError(f"cannot save the record of artwork {record.id}: {e}") from e
        return _record(row)

    def get(self, artwork_id: str) -> ArtworkRecord:
        rows = self._read(f"SELECT {_COLUMNS} FROM artworks WHERE id = ?", (artwork_id,))
        if not rows:
            raise ArtworkNotFound(artwork_id)
        return _record(rows[0])

    def page(self, filters: ArtworkFilter, limit: int, offset: int = 0,
             before: tuple[float, str] | None = None) -> list[ArtworkRecord]:
        """Newest first (created_at DESC, id DESC as tie-break, so pages never overlap or skip). `before` =
        (created_at, id) of the last artwork already seen starts after it: pages that stay put while new
        artworks arrive (a cursor), where an offset would shift."""
        if limit < 0 or offset < 0:
            raise ValueError(f"limit and offset must be non-negative, got limit={limit}, offset={offset}")
        where, params = _where(filters)
        if before is not None:
            # a row value, which SQLite turns into an index seek; the equivalent OR of two comparisons it cannot,
            # so a cursor deep in the gallery scanned every newer artwork first
            where += (" AND " if where else " WHERE ") + "(created_at, id) < (?, ?)"
            params = (*params, before[0], before[1])
        sql = f"SELECT {_COLUMNS} FROM artworks{where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
        return [_record(row) for row in self._read(sql, (*params, limit, offset))]

    def count(self, filters: ArtworkFilter) -> int:
        match = fts_query(filters.query) if filters.query else None
        if match is not None and filters == ArtworkFilter(query=filters.query):
            # Search alone: the FTS index (kept in sync by the triggers) counts without touching artworks.
            sql = "SELECT COUNT(*) FROM artworks_fts WHERE artworks_fts MATCH ?"
            return int(self._read(sql, (match,))[0][0])
        where, params = _where(filters)
        return int(self._read(f"SELECT COUNT(*) FROM artworks{where}", params)[0][0])

    def recipes_containing(self, fragment: str) -> list[str]:
        return [row[0] for row in self._read("SELECT recipe FROM artworks WHERE instr(recipe, ?) > 0", (fragment,))]

    def by_job(self, job_id: str) -> list[ArtworkRecord]:
        rows = self._read(f"SELECT {_COLUMNS} FROM artworks WHERE job_id = ? ORDER BY idx", (job_id,))
        return [_record(row) for row in rows]

    def recent_prompts(self, owner: str, pipeline: str, limit: int = 20, window: int = 2000) -> list[str]:
        """`owner`'s distinct non-empty prompts for `pipeline`, most recently used first.

        Only the newest `window` artworks are looked at: they come from the (owner, pipeline, created_at) index in
        one range read, where an exact answer would read every artwork the user ever made (a batch of 8 × 16 is 128
        rows of one prompt, so 2000 rows still hold a dozen or more jobs)."""
        sql = """
            SELECT prompt FROM (
                SELECT prompt, created_at, id FROM artworks WHERE owner = ? AND pipeline = ?
                ORDER BY created_at DESC, id DESC LIMIT ?
            ) WHERE prompt != '' GROUP BY prompt ORDER BY MAX(created_at) DESC LIMIT ?
        """
        return [row[0] for row in self._read(sql, (owner, pipeline, window, limit))]

    def set_favourite(self, artwork_id: str, value: bool) -> ArtworkRecord:
        try:
            with self._db.transaction() as conn:
                updated = conn.execute(
                    "UPDATE artworks SET favourite = ? WHERE id = ?", (int(bool(value)), artwork_id)
                ).rowcount
                row = conn.execute(f"SELECT {_COLUMNS} FROM artworks WHERE id = ?", (artwork_id,)).fetchone()
        except sqlite3.Error as e:
            raise ArtworkSaveError(f"cannot update artwork {artwork_id}: {e}") from e
        if not updated:
            raise ArtworkNotFound(artwork_id)
        return _record(row)

    def delete(self, artwork_id: str) -> ArtworkRecord:
        """Delete the row and return what it held. Joins the caller's transaction if there is one, so the
        caller can remove files inside it and roll the row back if that fails."""
        try:
            with self._db.transaction() as conn:
                row = conn.execute(f"SELECT {_COLUMNS} FROM artworks WHERE id = ?", (artwork_id,)).fetchone()
                if row is not None:
                    conn.execute("DELETE FROM artworks WHERE id = ?", (artwork_id,))
        except sqlite3.Error as e:
            raise ArtworkSaveError(f"cannot delete the record of artwork {artwork_id}: {e}") from e
        if row is None:
            raise ArtworkNotFound(artwork_id)
        return _record(row)

    def all_files(self) -> dict[str, tuple[str, str]]:
        """id → (relative PNG path, relative thumbnail path) of every record (for reconcile; read from the
        `artworks_files` index, not the rows)."""
        return {row[0]: (row[1], row[2]) for row in self._read("SELECT id, path, thumb FROM artworks")}

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._db.query(sql, params)
        except sqlite3.Error as e:
            raise GalleryError(f"cannot read the gallery: {e}") from e


def _where(filters: ArtworkFilter) -> tuple[str, tuple[Any, ...]]:
    clauses: list[str] = []
    params: list[Any] = []
    # Which index leads: the favourites' when only favourites are asked for (they are few), else the model's (a model
    # implies its generator), else the generator's, else the owner's. A leading `+` keeps SQLite from using an index
    # for that term; left to itself it weighs indexes by how many terms they match, and would rather count a few
    # favourites by walking (owner, pipeline) over every text-to-image artwork.
    favourites_only = filters.favourite is True
    unindexed = {"owner": favourites_only, "pipeline": favourites_only or filters.model is not None,
                 "model": favourites_only}
    for column in ("owner", "pipeline", "model"):
        value = getattr(filters, column)
        if value is not None:
            clauses.append(f"{'+' if unindexed[column] else ''}{column} = ?")
            params.append(value)
    if filters.favourite is not None:
        clauses.append("favourite = ?")
        params.append(int(filters.favourite))
    match = fts_query(filters.query) if filters.query else None
    if match is not None:
        # `+rowid` keeps the planner walking the created_at index and probing the match set, which stops after
        # one page; driving from the match set instead fetches and sorts every hit (150 ms for a common word
        # in 100k artworks instead of 7 ms). A rare word costs one index scan (~10 ms per 100k).
        clauses.append("+rowid IN (SELECT rowid FROM artworks_fts WHERE artworks_fts MATCH ?)")
        params.append(match)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)


def _record(row: sqlite3.Row) -> ArtworkRecord:
    try:
        recipe = Recipe.from_json(row["recipe"])
    except ValueError as e:
        raise GalleryError(f"artwork {row['id']} has a corrupt recipe in the database: {e}") from e
    return ArtworkRecord(
        id=row["id"], recipe=recipe, path=row["path"], thumb=row["thumb"], width=row["width"],
        height=row["height"], favourite=bool(row["favourite"]),
    )
