"""The SQLite job store: states, queue positions, cancels, leases, dead workers, expiry, and
several processes sharing one file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
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


@pytest.fixture
def store(tmp_path: Path) -> Iterator[JobStore]:
    s = JobStore(tmp_path / "jobs" / "jobs.sqlite3", ttl_s=100.0)
    yield s
    s.close()


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
    a, b, c = (store.create("w1") for _ in range(3))
    assert [store.position(j.id) for j in (a, b, c)] == [0, 1, 2] and store.active() == 3
    store.start(a.id)
    assert [store.position(j.id) for j in (a, b, c)] == [0, 1, 2]
    store.finish(a.id, SUCCEEDED, result={})
    assert [store.position(j.id) for j in (b, c)] == [0, 1] and store.active() == 2


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


def test_finished_jobs_are_purged_after_their_ttl(store: JobStore) -> None:
    old, recent, unfinished = (store.create("w1", now=0.0) for _ in range(3))
    store.finish(old.id, SUCCEEDED, result={}, now=10.0)
    store.finish(recent.id, SUCCEEDED, result={}, now=50.0)
    assert store.purge(now=120.0) == 1
    assert store.get(old.id) is None and store.get(recent.id) is not None and store.get(unfinished.id) is not None


def test_the_file_is_in_wal_mode(store: JobStore) -> None:
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _in_another_process(path: Path, code: str) -> str:
    script = f"import sys; sys.path.insert(0, {str(HANDLER)!r})\nfrom nst_jobs.store import JobStore\n" \
             f"store = JobStore(__import__('pathlib').Path({str(path)!r}))\n{code}"
    return subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout


def test_processes_share_jobs_and_cancels(store: JobStore) -> None:
    job = store.create("w1")
    store.start(job.id)
    # Another worker (process) answers the status and takes the cancel ...
    out = _in_another_process(store.path, f"print(store.get({job.id!r}).state); store.cancel({job.id!r})")
    assert out.strip() == RUNNING
    # ... which the worker running the job sees at its next report.
    assert store.report(job.id, progress={"iteration": 1}) == BY_CLIENT


def test_concurrent_writers_each_get_their_own_place(store: JobStore) -> None:
    code = "ids = [store.create('w').id for _ in range(40)]; print(len(set(ids)))"
    procs = [subprocess.Popen([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(HANDLER)!r})\n"
                               "from pathlib import Path\nfrom nst_jobs.store import JobStore\n"
                               f"store = JobStore(Path({str(store.path)!r}))\n{code}"], stdout=subprocess.PIPE, text=True)
             for _ in range(3)]
    assert [p.communicate()[0].strip() for p in procs] == ["40"] * 3
    assert all(p.returncode == 0 for p in procs)
    with sqlite3.connect(store.path) as db:
        seqs = [r[0] for r in db.execute("SELECT seq FROM jobs")]
    assert len(seqs) == len(set(seqs)) == 120 and store.active() == 120
