"""The durable queue: ordering, atomic claims (threads and processes), bounds, cancel and restart recovery."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import pytest

from studio.jobs import JobError, JobNotFound, JobSpec, JobStatus, QueueFull, SqliteJobQueue


def spec(n: int = 0, *, owner: str = "local", priority: int = 0, batch_key: str | None = None) -> JobSpec:
    return JobSpec(pipeline="pattern", model="pattern-v1", params={"n": n}, seed=n, owner=owner, priority=priority,
                   batch_key=batch_key)


@pytest.fixture
def queue(tmp_path: Path) -> SqliteJobQueue:
    q = SqliteJobQueue(tmp_path / "jobs.db", max_pending=5)
    yield q
    q.close()


def test_claims_by_priority_then_submission_order(queue: SqliteJobQueue) -> None:
    first, second = queue.enqueue(spec(1)), queue.enqueue(spec(2))
    urgent = queue.enqueue(spec(3, priority=5))
    assert [queue.position(j.id) for j in (first, second, urgent)] == [1, 2, 0]
    claimed = [queue.claim("w").id for _ in range(3)]
    assert claimed == [urgent.id, first.id, second.id]
    assert queue.claim("w") is None


def test_claim_marks_running_and_keeps_the_spec(queue: SqliteJobQueue) -> None:
    job = queue.enqueue(spec(7, owner="ana"))
    claimed = queue.claim("cpu")
    assert claimed.id == job.id and claimed.status is JobStatus.RUNNING
    assert claimed.worker == "cpu" and claimed.attempts == 1 and claimed.started_at is not None
    assert claimed.spec == job.spec and claimed.owner == "ana"
    assert queue.position(job.id) == -1


def test_claim_filters_by_pipeline(queue: SqliteJobQueue) -> None:
    queue.enqueue(spec(1))
    assert queue.claim("w", pipelines=["gan"]) is None
    assert queue.claim("w", pipelines=["pattern"]) is not None


def test_full_queue_answers_with_the_number_ahead(queue: SqliteJobQueue) -> None:
    for i in range(5):
        queue.enqueue(spec(i))
    with pytest.raises(QueueFull, match="queue full, 5 jobs ahead"):
        queue.enqueue(spec(99))
    assert queue.pending_count() == 5
    queue.claim("w")  # a running job no longer counts against the bound
    queue.enqueue(spec(100))


def test_progress_complete_and_finished_jobs_stay_finished(queue: SqliteJobQueue) -> None:
    job = queue.enqueue(spec())
    queue.claim("w")
    queue.set_progress(job.id, 3, 4)
    running = queue.get(job.id)
    assert (running.step, running.total_steps, running.progress) == (3, 4, 0.75)
    done = queue.complete(job.id, ["a-0", "a-1"])
    assert done.status is JobStatus.COMPLETED and done.image_ids == ["a-0", "a-1"] and done.progress == 1
    with pytest.raises(JobError, match="already completed"):
        queue.fail(job.id, "late")


def test_cancel_pending_at_once_and_running_on_request(queue: SqliteJobQueue) -> None:
    pending, running = queue.enqueue(spec(1)), queue.enqueue(spec(2))
    queue.claim("w")  # takes `pending` (older)
    queue.cancel(running.id)
    assert queue.get(running.id).status is JobStatus.CANCELED
    requested = queue.cancel(pending.id)
    assert requested.status is JobStatus.RUNNING and requested.cancel_requested
    assert queue.mark_canceled(pending.id).status is JobStatus.CANCELED


def test_unknown_job_is_a_clear_error(queue: SqliteJobQueue) -> None:
    with pytest.raises(JobNotFound, match="no job nope"):
        queue.get("nope")


def test_restart_requeues_running_once_then_fails_and_keeps_pending(tmp_path: Path) -> None:
    q = SqliteJobQueue(tmp_path / "jobs.db")
    crashed, waiting = q.enqueue(spec(1)), q.enqueue(spec(2))
    q.claim("w")
    q.close()  # the server dies with `crashed` running

    q = SqliteJobQueue(tmp_path / "jobs.db")
    [recovered] = q.recover()
    assert recovered.id == crashed.id and recovered.status is JobStatus.PENDING
    assert "server stopped" in recovered.error
    assert q.get(waiting.id).status is JobStatus.PENDING
    assert q.claim("w").id == crashed.id  # it keeps its place at the front
    q.close()

    q = SqliteJobQueue(tmp_path / "jobs.db")  # and the server dies again under the same job
    [failed] = q.recover()
    assert failed.status is JobStatus.FAILED and "second time" in failed.error
    q.close()


def test_a_claim_takes_along_pending_jobs_of_the_same_batch_key_and_owner(tmp_path: Path) -> None:
    q = SqliteJobQueue(tmp_path / "jobs.db")
    first = q.enqueue(spec(0, batch_key="a"))
    other = q.enqueue(spec(1, batch_key="b"))
    alone = q.enqueue(spec(2))
    mates = [q.enqueue(spec(n, batch_key="a")) for n in (3, 4, 5)]
    bens = q.enqueue(spec(7, batch_key="a", owner="ben"))  # the same batch key, another user's job
    urgent = q.enqueue(spec(6, batch_key="a", priority=1, owner="cy"))
    assert q.claim("w").id == urgent.id and q.claim_batch("w", q.get(urgent.id), 3) == []  # no mate of its own
    job = q.claim("w")
    assert job.id == first.id and job.spec.batch_key == "a"
    assert [j.id for j in q.claim_batch("w", job, 2)] == [m.id for m in mates[:2]]  # oldest first, the limit
    taken = q.claim_batch("w", job, 5)
    assert [j.id for j in taken] == [mates[2].id]  # never ben's: one user's stop interrupts a whole batch
    assert all(j.status is JobStatus.RUNNING and j.worker == "w" and j.attempts == 1 for j in taken)
    assert q.claim_batch("w", q.get(alone.id), 3) == []  # a job without a key runs alone
    assert [q.claim("w").id for _ in range(3)] == [bens.id, other.id, alone.id]  # ben's turn, then local's
    q.close()


def test_a_job_returned_alone_is_never_batched_again(queue: SqliteJobQueue) -> None:
    job, mate = queue.enqueue(spec(0, batch_key="a")), queue.enqueue(spec(1, batch_key="a"))
    queue.claim("w")
    back = queue.return_to_queue(job.id, alone=True)  # its batch-mate was stopped: it runs again, on its own
    assert back.status is JobStatus.PENDING and back.attempts == 0 and back.spec.batch_key is None
    assert queue.claim("w").id == job.id and queue.claim_batch("w", queue.get(job.id), 3) == []
    assert queue.get(mate.id).status is JobStatus.PENDING


def test_orderly_shutdown_returns_a_job_without_counting_the_attempt(queue: SqliteJobQueue) -> None:
    job = queue.enqueue(spec())
    queue.claim("w")
    back = queue.return_to_queue(job.id)
    assert back.status is JobStatus.PENDING and back.attempts == 0


def _claim_all(path: str, worker: str, out: multiprocessing.Queue, start: Any) -> None:
    q = SqliteJobQueue(Path(path))
    start.wait()  # all processes begin claiming together: a slow start-up must not leave one to take every job
    claimed = []
    while (job := q.claim(worker)) is not None:
        claimed.append(job.id)
        q.complete(job.id, [])
        time.sleep(0.002)  # a job's work: without it one process can take all 600 while the others wait on the lock
    out.put(claimed)


@pytest.mark.slow
def test_concurrent_processes_never_claim_the_same_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    q = SqliteJobQueue(path, max_pending=10_000)
    ids = {q.enqueue(spec(i)).id for i in range(600)}
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_claim_all, args=(str(path), f"p{i}", out, start)) for i in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    claimed = [job_id for r in results for job_id in r]
    assert len(claimed) == len(set(claimed)) == 600, "a job was claimed twice or not at all"
    assert set(claimed) == ids
    assert sum(1 for r in results if r) >= 2, "the test needs at least two processes actually competing"
    assert all(j.status is JobStatus.COMPLETED and j.attempts == 1 for j in q.list(limit=1000))
    q.close()


def test_owners_take_turns_and_positions_say_so(tmp_path: Path) -> None:
    queue = SqliteJobQueue(tmp_path / "jobs.db", max_pending=100)
    heavy = [queue.enqueue(spec(i, owner="ana")) for i in range(5)]
    queue.claim("w")  # ana's first is running
    light = [queue.enqueue(spec(10 + i, owner="ben")) for i in range(2)]
    late = queue.enqueue(spec(20, owner="cy"))
    # ben and cy have waited without a turn: they go before ana's second, then everyone takes turns
    expected = [light[0], late, heavy[1], light[1], heavy[2], heavy[3], heavy[4]]
    positions = {job.id: queue.position(job.id) for job in expected}
    assert [positions[job.id] for job in expected] == list(range(len(expected)))
    assert [queue.claim("w").id for _ in expected] == [job.id for job in expected]
    queue.close()


def test_one_owner_cannot_fill_the_queue(tmp_path: Path) -> None:
    queue = SqliteJobQueue(tmp_path / "jobs.db", max_pending=10, max_pending_per_owner=3)
    for i in range(3):
        queue.enqueue(spec(i, owner="ana"))
    with pytest.raises(QueueFull, match="3 of your jobs are waiting"):
        queue.enqueue(spec(3, owner="ana"))
    queue.enqueue(spec(4, owner="ben"))  # others still get in
    queue.claim("w")
    queue.enqueue(spec(5, owner="ana"))  # and ana again once one of hers has started
    queue.close()
