"""Content hashes of model files: SHA-256, and the short forms other tools print (A1111's "Model hash" is the
first 10 hex digits). Cached in SQLite by (path, size, modification time), so a restart does not re-read 100 GB;
computed by one background thread, so listing a library or running a job never waits for them."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

CHUNK = 8 * 1024 * 1024
SHORT = 10  # digits of A1111's short hash
FLUSH_S = 1.0  # hashes found are written to SQLite at least this often, in one transaction
SCHEMA = """CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL)"""

Key = tuple[str, int, int]  # (path, size, mtime_ns): a file whose size or time changes is hashed anew


def file_key(path: Path) -> Key:
    stat = Path(path).stat()
    return str(path), stat.st_size, stat.st_mtime_ns


def sha256_of(path: Path, stop: threading.Event | None = None) -> str | None:
    """The SHA-256 of a file in hex; None when `stop` was set before it was read to the end."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while chunk := f.read(CHUNK):
            if stop is not None and stop.is_set():
                return None
            digest.update(chunk)
    return digest.hexdigest()


class HashCache:
    """Known hashes, in memory and (when given a path) in a SQLite file that outlives the process."""

    def __init__(self, db_path: Path | None) -> None:
        self.db_path = db_path
        self._known: dict[Key, str] = {}
        self._lock = threading.Lock()
        if db_path is not None:
            try:
                with self._connect() as db:
                    rows = db.execute("SELECT path, size, mtime_ns, sha256 FROM file_hashes").fetchall()
                self._known = {(p, s, m): h for p, s, m, h in rows}
            except sqlite3.Error as e:  # a broken cache costs time, never the studio
                logger.warning("ignoring the model hash cache %s: %s", db_path, e)
                self.db_path = None

    def _connect(self) -> sqlite3.Connection:
        assert self.db_path is not None
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.db_path, timeout=10)
        db.execute(SCHEMA)
        return db

    def get(self, key: Key) -> str | None:
        with self._lock:
            return self._known.get(key)

    def remember(self, key: Key, sha256: str) -> None:
        """Known at once to this process; `save` writes it for the next."""
        with self._lock:
            self._known[key] = sha256

    def save(self, found: dict[Key, str]) -> None:
        """Remember hashes and write them, in one transaction (the hasher hands them over in batches)."""
        with self._lock:
            self._known.update(found)
        if self.db_path is None or not found:
            return
        try:
            with self._connect() as db:
                db.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)",
                               [(*key, digest) for key, digest in found.items()])
        except sqlite3.Error as e:
            logger.warning("cannot write the model hash cache %s: %s", self.db_path, e)


class Hasher:
    """Hashes the files it is given, one at a time, smallest first, in a daemon thread; `wanted` replaces the
    list (after a rescan), so a file that went away is not read."""

    def __init__(self, cache: HashCache) -> None:
        self.cache = cache
        self._todo: list[tuple[Key, Path]] = []
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failed: dict[str, str] = {}  # path → why it could not be read

    def wanted(self, keys: Iterable[tuple[Key, Path]]) -> None:
        todo = sorted({k: p for k, p in keys if self.cache.get(k) is None}.items(), key=lambda kp: kp[0][1])
        with self._wake:
            self._todo = todo
            self._wake.notify()
        if todo and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="model-hasher", daemon=True)
            self._thread.start()

    @property
    def pending(self) -> int:
        with self._wake:
            return len(self._todo)

    def stop(self) -> None:
        """Stop after the current chunk, keeping what was hashed."""
        self._stop.set()
        with self._wake:
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        done: dict[Key, str] = {}
        flushed = time.monotonic()
        while not self._stop.is_set():
            with self._wake:
                if not self._todo:
                    self.cache.save(done)  # the queue ran dry: keep what was found before waiting
                    done, flushed = {}, time.monotonic()
                while not self._todo and not self._stop.is_set():
                    self._wake.wait()
                if self._stop.is_set():
                    break
                key, path = self._todo[0]
            try:
                digest = sha256_of(path, self._stop)
                if digest is not None and file_key(path) == key:  # not changed while it was read
                    done[key] = digest
                    self.cache.remember(key, digest)
            except OSError as e:
                self.failed[key[0]] = e.strerror or str(e)
            with self._wake:
                if self._todo and self._todo[0][0] == key:
                    self._todo.pop(0)
            if time.monotonic() - flushed > FLUSH_S:
                self.cache.save(done)
                done, flushed = {}, time.monotonic()
        self.cache.save(done)
