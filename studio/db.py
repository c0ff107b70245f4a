"""SQLite access shared by the stores: one connection per process, WAL, transactions, numbered migrations.

Each store (job queue, gallery records) owns its own database file and its own list of migrations; this
module only knows how to open a file, apply the migrations it is given in order, and run a transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)


class DatabaseError(RuntimeError):
    """The database file cannot be opened or migrated."""


class Database:
    """One SQLite connection guarded by a lock, so the threads of one process can share it.

    `migrations` is the store's schema history: migration *i* (1-based) brings `PRAGMA user_version`
    from i-1 to i. A migration is never edited once released; a schema change is a new entry.
    """

    def __init__(self, path: Path, migrations: Sequence[str], *, busy_timeout_s: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # isolation_level=None: we issue BEGIN ourselves, so claim-style read-then-write is one transaction.
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; WAL keeps commits atomic
            self._conn.execute("PRAGMA foreign_keys=ON")
        except sqlite3.Error as e:
            raise DatabaseError(f"cannot open database {self.path}: {e}") from e
        self._lock = threading.RLock()
        self._depth = 0
        self._migrate(migrations)

    def _migrate(self, migrations: Sequence[str]) -> None:
        with self.transaction() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > len(migrations):
                raise DatabaseError(
                    f"{self.path} has schema version {version}, newer than this Atelier knows ({len(migrations)}); "
                    "upgrade Atelier or use another --data-dir"
                )
            for number, script in enumerate(migrations[version:], start=version + 1):
                logger.info("migrating %s to schema version %d", self.path.name, number)
                for statement in _split_statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {number}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE … COMMIT (ROLLBACK on error). Nested calls join the outer transaction.

        IMMEDIATE takes the write lock up front, so a select followed by an update inside one transaction
        cannot interleave with another process doing the same (this is what makes claiming atomic).
        """
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self._conn
                finally:
                    self._depth -= 1
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")
            finally:
                self._depth = 0

    def query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """A read outside any explicit transaction (WAL readers never block the writer)."""
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _split_statements(script: str) -> list[str]:
    """Split a migration into statements; sqlite3.complete_statement keeps trigger bodies whole."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    if current.strip():
        statements.append(current.strip())
    return statements
