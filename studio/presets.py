"""User presets: named sets of a generator tab's settings, kept per user and per generator in SQLite.

A preset is a JSON object of param name → value, as the tab's controls hold them; the UI decides which params go
in (settings, not the prompt or pictures) and checks them against the pipeline's Params before saving. The store
lives in its own file (`presets.db` in the data dir), so the gallery and the queue never wait on it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import unicodedata
from pathlib import Path
from typing import Any

from studio.db import Database

logger = logging.getLogger(__name__)

DB_NAME = "presets.db"
MAX_NAME_CHARS = 60  # a dropdown label, not a description
MAX_PRESETS = 100  # per user and generator: enough for any artist, and a bound on what one login can store
MAX_PARAMS_CHARS = 20_000  # a tab's settings are a few hundred characters

MIGRATIONS: list[str] = [
    # 1: one row per (owner, generator, name); saving a name again replaces its settings
    """
    CREATE TABLE presets (
        owner TEXT NOT NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL,
        params TEXT NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (owner, kind, name)
    );
    """,
]


class PresetError(ValueError):
    """A request the store refuses (a bad name, too many presets); the message is meant for the user."""


class PresetNotFound(PresetError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no saved preset named {name!r}")


class PresetSaveError(RuntimeError):
    """The database could not be written or read; nothing was changed."""


def clean_name(name: str) -> str:
    """The name as stored: trimmed; PresetError when empty, too long, or holding control characters."""
    name = (name or "").strip()
    if not name:
        raise PresetError("give the preset a name")
    if len(name) > MAX_NAME_CHARS:
        raise PresetError(f"a preset name has at most {MAX_NAME_CHARS} characters, got {len(name)}")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name):
        raise PresetError("a preset name cannot hold control characters")
    return name


class PresetStore:
    """Presets under `root/presets.db`. Safe to share between the threads of a process."""

    def __init__(self, root: Path) -> None:
        self._db = Database(Path(root) / DB_NAME, MIGRATIONS)

    def close(self) -> None:
        self._db.close()

    def names(self, owner: str, kind: str) -> list[str]:
        """`owner`'s presets for the generator `kind`, in alphabetical order."""
        rows = self._read("SELECT name FROM presets WHERE owner = ? AND kind = ? ORDER BY name COLLATE NOCASE, name",
                          (owner, kind))
        return [row[0] for row in rows]

    def get(self, owner: str, kind: str, name: str) -> dict[str, Any]:
        rows = self._read("SELECT params FROM presets WHERE owner = ? AND kind = ? AND name = ?", (owner, kind, name))
        if not rows:
            raise PresetNotFound(name)
        return json.loads(rows[0][0])

    def save(self, owner: str, kind: str, name: str, params: dict[str, Any]) -> str:
        """Store (or replace) a preset; returns its name as stored. PresetError for a bad name, oversized params or
        one preset too many."""
        name = clean_name(name)
        try:
            text = json.dumps(params, ensure_ascii=False, allow_nan=False, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise PresetError(f"these settings cannot be saved as a preset: {e}") from None
        if len(text) > MAX_PARAMS_CHARS:
            raise PresetError(f"these settings are too large for a preset ({len(text):,} characters; at most "
                              f"{MAX_PARAMS_CHARS:,})")
        try:
            with self._db.transaction() as conn:
                exists = conn.execute("SELECT 1 FROM presets WHERE owner = ? AND kind = ? AND name = ?",
                                      (owner, kind, name)).fetchone()
                count = conn.execute("SELECT COUNT(*) FROM presets WHERE owner = ? AND kind = ?",
                                     (owner, kind)).fetchone()[0]
                if not exists and count >= MAX_PRESETS:
                    raise PresetError(f"you have {count} presets here, the most one user may keep; delete one first")
                conn.execute(
                    "INSERT INTO presets (owner, kind, name, params, updated_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT (owner, kind, name) DO UPDATE SET params = excluded.params, "
                    "updated_at = excluded.updated_at",
                    (owner, kind, name, text, time.time()))
        except sqlite3.Error as e:
            raise PresetSaveError(f"cannot save the preset {name!r}: {e}") from e
        return name

    def delete(self, owner: str, kind: str, name: str) -> None:
        try:
            with self._db.transaction() as conn:
                deleted = conn.execute("DELETE FROM presets WHERE owner = ? AND kind = ? AND name = ?",
                                       (owner, kind, name)).rowcount
        except sqlite3.Error as e:
            raise PresetSaveError(f"cannot delete the preset {name!r}: {e}") from e
        if not deleted:
            raise PresetNotFound(name)

    def _read(self, sql: str, params: tuple[Any, ...]) -> list[sqlite3.Row]:
        try:
            return self._db.query(sql, params)
        except sqlite3.Error as e:
            raise PresetSaveError(f"cannot read the presets: {e}") from e
