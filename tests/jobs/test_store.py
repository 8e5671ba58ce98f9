"""The job stores, SQLite and Redis, through one suite: states, queue positions, cancels, leases,
dead and silent workers, expiry, and several processes sharing one store. The Redis cases run
against a real redis-server (tests/redis_server.py)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from nst_jobs.redis_store import RedisJobStore
from nst_jobs.sqlite_store import SqliteJobStore
from nst_jobs.store import (
    BY_CLIENT,
    CANCELLED,
    FAILED,
    LEASE_EXPIRED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    JobStore,
)

HANDLER = Path(__file__).resolve().parents[2] / "handler"


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobStore]:
    """Each backend, empty: SQLite in a new file, Redis under a new key prefix."""
    if request.param == "sqlite":
        s: JobStore = SqliteJobStore(tmp_path / "jobs" / "jobs.sqlite3", ttl_s=100.0)
    else:
        s = RedisJobStore(request.getfixturevalue("redis_url"), prefix=f"test-{uuid.uuid4().hex}:", ttl_s=100.0)
    yield s
    s.close()


def reopen(store: JobStore) -> str:
    """Python code that opens ``store`` again (as another worker process would) as ``store``."""
    if isinstance(store, SqliteJobStore):
        return f"from nst_jobs.sqlite_store import SqliteJobStore\nstore = SqliteJobStore(Path({str(store.path)!r}))\n"
    assert isinstance(store, RedisJobStore)
    return (f"from nst_jobs.redis_store import RedisJobStore\n"
            f"store = RedisJobStore({store.url!r}, prefix={store.prefix!r})\n")


def in_another_process(store: JobStore, code: str) -> subprocess.Popen[str]:
    """Run ``code`` with ``store`` reopened in a new Python process."""
    script = f"import sys; sys.path.insert(0, {str(HANDLER)!r})\nfrom pathlib import Path\n{reopen(store)}{code}"
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)


def test_a_job_runs_reports_and_keeps_its_result(store: JobStore) -> None:
    job = store.create("w1", now=10.0)
    assert (job.state, job.worker, job.created_s, job.lease_s, job.cancel, job.done) == (QUEUED, "w1", 10.0, None,
                                                                                          None, False)
    assert store.start(job.id, now=11.0)
    progress = {"event": "progress", "iteration": 3, "of": 10, "losses": {"total": 1.5}, "elapsed_s": 1.0, "eta_s": 2.3}
    assert store.report(job.id, progress=progress, preview={"event": "preview", "image": "AAAA"}) is None
    running = store.get(job.id)
    assert running is not None and (running.state, running.started_s, running.progress) == (RUNNING, 11.0, progress)
    assert running.preview == {"event": "preview", "image": "AAAA"}
    store.finish(job.id, SUCCEEDED, result={"image": "...", "iterations": 10}, now=20.0)
    done = store.get(job.id)
    assert done is not None and (done.state, done.finished_s, done.result, done.done) == (
        SUCCEEDED, 20.0, {"image": "...", "iterations": 10}, True)
    store.finish(job.id, FAILED, error={"error": {}})  # a finished job stays as it ended
    assert store.get(job.id) == done
    assert store.get("no-such-job") is None
    with pytest.raises(ValueError, match="state must be one of"):
        store.finish(job.id, RUNNING)


def test_positions_follow_acceptance_order(store: JobStore) -> None:
    a, b, elsewhere, c = (store.create(w) for w in ("m1:w1", "m1:w2", "m2:w1", "m1:w1"))
    assert [store.position(j.id) for j in (a, b, c)] == [0, 1, 2] and store.active("m1") == 3
    # Another machine's jobs run on its own devices: they are not ahead in this machine's queue.
    assert store.position(elsewhere.id) == 0 and store.active("m2") == 1
    store.start(a.id)
    assert [store.position(j.id) for j in (a, b, c)] == [0, 1, 2]
    store.finish(a.id, SUCCEEDED, result={})
    assert [store.position(j.id) for j in (b, c)] == [0, 1] and store.active("m1") == 2
    assert store.position("no-such-job") == 0 and store.active("m3") == 0


def test_the_jobs_ahead_come_in_order_with_their_estimates(store: JobStore) -> None:
    a, b, c = (store.create("m1:w1", estimate_s=e) for e in (2.5, None, 4.0))
    assert (a.estimate_s, b.estimate_s, c.estimate_s) == (2.5, None, 4.0)
    assert [(j.id, j.estimate_s) for j in store.ahead(c.id)] == [(a.id, 2.5), (b.id, None)]
    assert store.ahead(a.id) == [] and store.ahead("no-such-job") == []
    store.start(a.id)
    assert [j.state for j in store.ahead(c.id)] == [RUNNING, QUEUED]


def test_cancel_ends_a_queued_job_at_once_and_flags_a_running_one(store: JobStore) -> None:
    queued, running = store.create("w1"), store.create("w1")
    store.start(running.id)
    after = store.cancel(queued.id)
    assert after is not None and (after.state, after.cancel) == (CANCELLED, BY_CLIENT)
    assert not store.start(queued.id)  # a worker that dequeues it later does not run it
    flagged = store.cancel(running.id)
    assert flagged is not None and (flagged.state, flagged.cancel) == (RUNNING, BY_CLIENT)
    assert store.report(running.id, progress={"iteration": 5}) == BY_CLIENT  # what the worker sees
    store.finish(running.id, CANCELLED, result={"stopped": "cancelled"})
    finished = store.get(running.id)
    assert finished is not None and (finished.state, finished.result) == (CANCELLED, {"stopped": "cancelled"})
    assert store.cancel(running.id) == finished  # cancelling a finished job changes nothing
    assert store.cancel("no-such-job") is None


def test_a_lease_not_renewed_in_time_cancels_the_job(store: JobStore) -> None:
    job = store.create("w1", lease_s=10.0, now=0.0)
    unleased = store.create("w1", now=0.0)  # a client waits on the connection
    assert store.expire_leases(now=5.0) == []
    store.renew(job.id, now=8.0)
    assert store.expire_leases(now=17.9) == []
    assert store.expire_leases(now=18.1) == [job.id]
    expired = store.get(job.id)
    assert expired is not None and (expired.state, expired.cancel) == (CANCELLED, LEASE_EXPIRED)
    kept = store.get(unleased.id)
    assert kept is not None and kept.state == QUEUED
    running = store.create("w1", lease_s=1.0, now=0.0)
    store.start(running.id)
    assert store.expire_leases(now=2.0) == [running.id]
    assert store.report(running.id) == LEASE_EXPIRED


def test_the_jobs_of_a_dead_worker_fail_and_earlier_results_stay(store: JobStore) -> None:
    finished, running, queued, other = (store.create(w) for w in ("w1", "w1", "w1", "w2"))
    store.start(finished.id)
    store.finish(finished.id, SUCCEEDED, result={"image": "x"})
    store.start(running.id)
    assert sorted(store.fail_worker("w1", "worker w1 died")) == sorted([running.id, queued.id])
    for job_id in (running.id, queued.id):
        job = store.get(job_id)
        assert job is not None and job.state == FAILED
        assert job.error == {"error": {"code": "worker_died", "message": "worker w1 died", "field": None}}
    kept = store.get(finished.id)
    assert kept is not None and (kept.state, kept.result) == (SUCCEEDED, {"image": "x"})
    other_job = store.get(other.id)
    assert other_job is not None and other_job.state == QUEUED


def test_the_jobs_of_a_worker_that_stopped_beating_fail(store: JobStore) -> None:
    """A replica scaled down or lost never restarts under its name: its silence fails its jobs."""
    lost, alive, unknown = store.create("m1:w1"), store.create("m2:w1"), store.create("m3:w1")
    store.start(lost.id)
    store.beat("m1:w1", now=100.0)
    store.beat("m2:w1", now=100.0)
    assert store.fail_silent(30.0, now=125.0) == []
    store.beat("m2:w1", now=125.0)
    assert store.fail_silent(30.0, now=140.0) == [lost.id]
    failed = store.get(lost.id)
    assert failed is not None and failed.state == FAILED and failed.error is not None
    assert failed.error["error"]["code"] == "worker_died" and "no heartbeat for 30 s" in failed.error["error"]["message"]
    for kept in (alive, unknown):  # still beating; never beat (its own restart reports it)
        job = store.get(kept.id)
        assert job is not None and job.state == QUEUED
    assert store.fail_silent(30.0, now=141.0) == []  # a worker is failed once, then forgotten
    store.beat("m1:w1", now=150.0)  # ... until it beats again
    assert store.fail_silent(30.0, now=160.0) == [alive.id]  # m2:w1 is silent now


def test_finished_jobs_are_purged_after_their_ttl(store: JobStore) -> None:
    old, recent, unfinished = (store.create("w1", now=0.0) for _ in range(3))
    store.finish(old.id, SUCCEEDED, result={}, now=10.0)
    store.finish(recent.id, SUCCEEDED, result={}, now=50.0)
    assert store.purge(now=120.0) == 1
    assert store.get(old.id) is None and store.get(recent.id) is not None and store.get(unfinished.id) is not None


def test_the_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_processes_share_jobs_and_cancels(store: JobStore) -> None:
    job = store.create("w1")
    store.start(job.id)
    # Another worker (process) answers the status and takes the cancel ...
    other = in_another_process(store, f"print(store.get({job.id!r}).state); store.cancel({job.id!r})")
    assert other.communicate()[0].strip() == RUNNING and other.returncode == 0
    # ... which the worker running the job sees at its next report.
    assert store.report(job.id, progress={"iteration": 1}) == BY_CLIENT


def test_concurrent_writers_each_get_their_own_place(store: JobStore) -> None:
    procs = [in_another_process(store, "ids = [store.create('m:w').id for _ in range(40)]; print(len(set(ids)))")
             for _ in range(3)]
    assert [p.communicate()[0].strip() for p in procs] == ["40"] * 3
    assert all(p.returncode == 0 for p in procs)
    assert store.active("m") == 120
    if isinstance(store, SqliteJobStore):
        with sqlite3.connect(store.path) as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs")]
    else:
        assert isinstance(store, RedisJobStore)
        ids = [key.rsplit(":", 1)[1] for key in store._redis.scan_iter(f"{store.prefix}job:*")]
    assert sorted(store.position(job_id) for job_id in ids) == list(range(120))
