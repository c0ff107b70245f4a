"""SqliteJobQueue: the durable job queue in one SQLite file (WAL).

Claiming selects and marks running inside one BEGIN IMMEDIATE transaction, so two workers — threads or
separate processes on the same file — never take the same job. Jobs survive restarts: pending ones stay
pending, running ones are re-queued once by `recover()` and failed with the reason the second time.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Collection
from pathlib import Path

from studio.db import Database
from studio.jobs.models import Job, JobError, JobNotFound, JobSpec, JobStatus, QueueFull
from studio.jobs.queue import JobQueue

logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 2  # the first run plus one re-queue after a crash or restart

MIGRATIONS = [
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- submission order, the tie-break after priority
        id TEXT NOT NULL UNIQUE,
        owner TEXT NOT NULL,
        pipeline TEXT NOT NULL,
        model TEXT NOT NULL,
        params TEXT NOT NULL,
        seed INTEGER NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        progress REAL NOT NULL DEFAULT 0,
        step INTEGER NOT NULL DEFAULT 0,
        total_steps INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 0,
        worker TEXT,
        error TEXT,
        image_ids TEXT NOT NULL DEFAULT '[]',
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_by_status ON jobs (status, priority DESC, seq);
    CREATE INDEX jobs_by_owner ON jobs (owner, seq DESC);
    """,
    """
    -- when each owner last had a job claimed: the fair queue serves the owner waited on longest first
    CREATE TABLE owners_served (
        owner TEXT PRIMARY KEY,
        last_claim REAL NOT NULL
    );
    """,
    """
    -- pipeline, model and the params that must match for jobs to run as one batch (NULL: never batched)
    ALTER TABLE jobs ADD COLUMN batch_key TEXT;
    CREATE INDEX jobs_by_batch ON jobs (batch_key, status, seq) WHERE batch_key IS NOT NULL;
    """,
    """
    -- the model as resolved at submit (JSON: id, source, hash, licence…), so a rescan cannot change a queued job
    ALTER TABLE jobs ADD COLUMN model_entry TEXT;
    """,
    """
    -- the names of the prompt styles applied at submit (a JSON list; NULL: none)
    ALTER TABLE jobs ADD COLUMN styles TEXT;
    """,
]


class SqliteJobQueue(JobQueue):
    """Jobs run by priority, then fairly across owners (round robin: the owner whose last job was claimed
    longest ago goes first, so one user's hundred jobs cannot starve another's one), then in submission order."""

    def __init__(self, path: Path, *, max_pending: int = 1000, max_pending_per_owner: int | None = None) -> None:
        self.db = Database(path, MIGRATIONS)
        self.max_pending = max_pending
        self.max_pending_per_owner = max_pending_per_owner or max_pending
        self._wakeup = threading.Condition()

    # -- submitting -----------------------------------------------------------------------------------
    def enqueue(self, spec: JobSpec) -> Job:
        job_id = secrets.token_hex(8)
        with self.db.transaction() as conn:
            pending = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'pending'").fetchone()[0]
            if pending >= self.max_pending:
                raise QueueFull(pending)
            own = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND owner = ?",
                               (spec.owner,)).fetchone()[0]
            if own >= self.max_pending_per_owner:
                raise QueueFull(own, per_owner=True)
            conn.execute(
                "INSERT INTO jobs (id, owner, pipeline, model, params, seed, priority, status, created_at, batch_key,"
                " model_entry, styles) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?)",
                (job_id, spec.owner, spec.pipeline, spec.model, json.dumps(spec.params), spec.seed,
                 spec.priority, time.time(), spec.batch_key,
                 None if spec.model_entry is None else json.dumps(spec.model_entry),
                 json.dumps(list(spec.styles)) if spec.styles else None),
            )
        self.wake()
        return self.get(job_id)

    def wait_for_work(self, timeout: float) -> None:
        """Sleep until a job is enqueued in this process, or `timeout` (other processes are seen on the next poll)."""
        with self._wakeup:
            self._wakeup.wait(timeout)

    def wake(self) -> None:
        with self._wakeup:
            self._wakeup.notify_all()

    def claim(self, worker: str, pipelines: Collection[str] | None = None, *,
              leave_models: Collection[str] = ()) -> Job | None:
        sql = ("SELECT j.id, j.owner FROM jobs j LEFT JOIN owners_served s ON s.owner = j.owner"
               " WHERE j.status = 'pending'")
        args: list[object] = []
        if pipelines is not None:
            sql += f" AND j.pipeline IN ({','.join('?' * len(pipelines))})"
            args += list(pipelines)
        if leave_models:
            sql += f" AND j.model NOT IN ({','.join('?' * len(leave_models))})"
            args += list(leave_models)
        sql += " ORDER BY j.priority DESC, COALESCE(s.last_claim, 0), j.seq LIMIT 1"
        with self.db.transaction() as conn:
            row = conn.execute(sql, args).fetchone()
            return None if row is None else self._take(conn, worker, row["id"], row["owner"])

    def claim_batch(self, worker: str, job: Job, limit: int) -> list[Job]:
        """Up to `limit` more pending jobs of `job`'s owner with its batch key, oldest first, taken as `claim` takes
        one. Only one owner's jobs share a batch: one user's stop (which interrupts the whole batch) never touches
        another user's work, nor does one user's batch slow another's job."""
        if limit < 1 or job.spec.batch_key is None:
            return []
        with self.db.transaction() as conn:
            rows = conn.execute("SELECT id, owner FROM jobs WHERE batch_key = ? AND status = 'pending'"
                                " AND priority = ? AND owner = ? ORDER BY seq LIMIT ?",
                                (job.spec.batch_key, job.spec.priority, job.spec.owner, limit)).fetchall()
            return [self._take(conn, worker, row["id"], row["owner"]) for row in rows]

    # -- reading --------------------------------------------------------------------------------------
    def get(self, job_id: str) -> Job:
        with self.db.transaction() as conn:
            return self._get(conn, job_id)

    def list(self, *, owner: str | None = None, statuses: Collection[JobStatus] | None = None,
             limit: int = 100) -> list[Job]:
        sql, args = "SELECT * FROM jobs WHERE 1 = 1", []
        if owner is not None:
            sql += " AND owner = ?"
            args.append(owner)
        if statuses:
            sql += f" AND status IN ({','.join('?' * len(statuses))})"
            args += [str(s) for s in statuses]
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        return [_row_to_job(r) for r in self.db.query(sql, args)]

    def position(self, job_id: str) -> int:
        """How many jobs will be claimed before this one if no more arrive: every job of a higher priority, then,
        at its own, the turns the fair queue gives each other owner before this job's turn comes."""
        with self.db.transaction() as conn:
            job = self._get(conn, job_id)
            if job.status is not JobStatus.PENDING:
                return -1
            row = conn.execute("SELECT seq, priority, owner FROM jobs WHERE id = ?", (job_id,)).fetchone()
            higher = conn.execute("SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND priority > ?",
                                  (row["priority"],)).fetchone()[0]
            peers = conn.execute(
                "SELECT j.owner, COUNT(*) AS n, MIN(j.seq) AS first, COALESCE(s.last_claim, 0) AS last,"
                " SUM(j.owner = ? AND j.seq < ?) AS mine_before FROM jobs j"
                " LEFT JOIN owners_served s ON s.owner = j.owner"
                " WHERE j.status = 'pending' AND j.priority = ? GROUP BY j.owner",
                (row["owner"], row["seq"], row["priority"])).fetchall()
        turn = {p["owner"]: (p["last"], p["first"]) for p in peers}
        k = next(p["mine_before"] for p in peers if p["owner"] == row["owner"])  # this job is its owner's k-th
        mine = turn[row["owner"]]
        others = sum(min(p["n"], k + 1 if turn[p["owner"]] < mine else k) for p in peers if p["owner"] != row["owner"])
        return higher + k + others

    def pending_count(self, owner: str | None = None) -> int:
        if owner is None:
            return self.db.query("SELECT COUNT(*) FROM jobs WHERE status = 'pending'")[0][0]
        return self.db.query("SELECT COUNT(*) FROM jobs WHERE status = 'pending' AND owner = ?", (owner,))[0][0]

    def params_containing(self, fragment: str) -> list[str]:
        return [row[0] for row in self.db.query("SELECT params FROM jobs WHERE instr(params, ?) > 0", (fragment,))]

    # -- a running job's life -------------------------------------------------------------------------
    def set_progress(self, job_id: str, step: int, total: int) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET step = ?, total_steps = ?, progress = ? WHERE id = ? AND status = 'running'",
                (step, total, step / total if total else 0.0, job_id),
            )

    def complete(self, job_id: str, image_ids: list[str]) -> Job:
        return self._finish(job_id, JobStatus.COMPLETED, None, image_ids)

    def fail(self, job_id: str, error: str, image_ids: list[str] | None = None) -> Job:
        return self._finish(job_id, JobStatus.FAILED, error, image_ids or [])

    def mark_canceled(self, job_id: str) -> Job:
        return self._finish(job_id, JobStatus.CANCELED, "canceled by the user", [])

    def cancel(self, job_id: str) -> Job:
        with self.db.transaction() as conn:
            job = self._get(conn, job_id)
            if job.status is JobStatus.PENDING:
                conn.execute(
                    "UPDATE jobs SET status = 'canceled', error = 'canceled by the user', finished_at = ?"
                    " WHERE id = ?", (time.time(), job_id),
                )
            elif job.status is JobStatus.RUNNING:
                conn.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
            return self._get(conn, job_id)

    def release(self, job_id: str, reason: str) -> Job:
        with self.db.transaction() as conn:
            job = self._get(conn, job_id)
            if job.status is not JobStatus.RUNNING:
                return job
            if job.cancel_requested:
                return self._finish(job_id, JobStatus.CANCELED, f"canceled by the user ({reason})", [])
            if job.attempts < MAX_ATTEMPTS:
                logger.warning("job %s re-queued: %s", job_id, reason)
                conn.execute(
                    "UPDATE jobs SET status = 'pending', worker = NULL, error = ?, progress = 0, step = 0"
                    " WHERE id = ?", (f"re-queued after: {reason}", job_id),
                )
                self.wake()
                return self._get(conn, job_id)
            return self._finish(job_id, JobStatus.FAILED, f"{reason} (for the second time; not retried)", [])

    def return_to_queue(self, job_id: str, *, alone: bool = False) -> Job:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE jobs SET status = 'pending', worker = NULL, attempts = MAX(attempts - 1, 0), progress = 0,"
                " step = 0, batch_key = CASE WHEN ? THEN NULL ELSE batch_key END WHERE id = ? AND status = 'running'",
                (alone, job_id),
            )
            return self._get(conn, job_id)

    def recover(self) -> list[Job]:
        running = [r["id"] for r in self.db.query("SELECT id FROM jobs WHERE status = 'running'")]
        return [self.release(job_id, "the server stopped while the job was running") for job_id in running]

    def close(self) -> None:
        self.db.close()

    # -- internals ------------------------------------------------------------------------------------
    def _take(self, conn: sqlite3.Connection, worker: str, job_id: str, owner: str) -> Job:
        """Mark a pending job running on `worker` (inside the caller's transaction)."""
        now = time.time()
        conn.execute(
            "UPDATE jobs SET status = 'running', worker = ?, attempts = attempts + 1, started_at = ?,"
            " progress = 0, step = 0, total_steps = 0 WHERE id = ?",
            (worker, now, job_id),
        )
        conn.execute("INSERT INTO owners_served (owner, last_claim) VALUES (?, ?)"
                     " ON CONFLICT (owner) DO UPDATE SET last_claim = excluded.last_claim", (owner, now))
        return self._get(conn, job_id)

    def _finish(self, job_id: str, status: JobStatus, error: str | None, image_ids: list[str]) -> Job:
        with self.db.transaction() as conn:
            job = self._get(conn, job_id)
            if job.status.finished:
                raise JobError(f"job {job_id} is already {job.status}")
            conn.execute(
                "UPDATE jobs SET status = ?, error = ?, image_ids = ?, finished_at = ?,"
                " progress = CASE WHEN ? = 'completed' THEN 1 ELSE progress END WHERE id = ?",
                (str(status), error, json.dumps(image_ids), time.time(), str(status), job_id),
            )
            return self._get(conn, job_id)

    @staticmethod
    def _get(conn: sqlite3.Connection, job_id: str) -> Job:
        row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return _row_to_job(row)


def _row_to_job(row: sqlite3.Row) -> Job:
    spec = JobSpec(pipeline=row["pipeline"], model=row["model"], params=json.loads(row["params"]),
                   seed=row["seed"], owner=row["owner"], priority=row["priority"], batch_key=row["batch_key"],
                   model_entry=json.loads(row["model_entry"]) if row["model_entry"] else None,
                   styles=tuple(json.loads(row["styles"])) if row["styles"] else ())
    return Job(
        id=row["id"], spec=spec, status=JobStatus(row["status"]), progress=row["progress"], step=row["step"],
        total_steps=row["total_steps"], attempts=row["attempts"], worker=row["worker"], error=row["error"],
        image_ids=json.loads(row["image_ids"]), cancel_requested=bool(row["cancel_requested"]),
        created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
    )
