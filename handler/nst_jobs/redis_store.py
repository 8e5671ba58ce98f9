"""The shared job store for replicas on many machines (KServe): every job a hash in one Redis
server, changed by Lua scripts so that each change is atomic. :mod:`.store` describes the
states and the interface; ``handler.jobs.redis_url`` selects this store (docs/serving.md).

Keys, under ``prefix``: ``job:<id>`` (a hash of :class:`.store.Job`'s fields, JSON for the
events and bodies), ``seq`` (the acceptance counter), ``active:<machine>`` (a sorted set of that
machine's unfinished jobs by acceptance), ``worker:<name>`` (a set of a worker's unfinished
jobs), ``leases`` (unfinished jobs with a lease and no cancel, by lease end), ``finished``
(ended jobs by the time they expire) and ``beats`` (workers by their last heartbeat).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis

from .store import BY_CLIENT, CANCELLED, FAILED, LEASE_EXPIRED, QUEUED, Job, JobStore, machine_of, worker_died

#: KEYS: job, active, worker, leases, finished. ARGV: state, now, result, error, ttl_s.
#: Ends an unfinished job; 1 when it did, 0 when the job had ended (or is unknown).
_FINISH = """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'queued' and state ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished_s', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('ZREM', KEYS[2], id)
redis.call('SREM', KEYS[3], id)
redis.call('ZREM', KEYS[4], id)
redis.call('ZADD', KEYS[5], tonumber(ARGV[2]) + tonumber(ARGV[5]), id)
return 1
"""

#: KEYS: job. ARGV: now. Queued -> running; 1 when it was queued.
_START = """
if redis.call('HGET', KEYS[1], 'state') ~= 'queued' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'running', 'started_s', ARGV[1])
return 1
"""

#: KEYS: job, leases. ARGV: reason. Flags an unfinished job; returns its state (false: unknown).
_FLAG = """
local state = redis.call('HGET', KEYS[1], 'state')
if state == 'queued' or state == 'running' then
  redis.call('HSETNX', KEYS[1], 'cancel', ARGV[1])
  redis.call('ZREM', KEYS[2], redis.call('HGET', KEYS[1], 'id'))
end
return state
"""

#: KEYS: job. ARGV: progress, preview (JSON or ''). Returns the cancel reason (false: none).
_REPORT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if ARGV[1] ~= '' then redis.call('HSET', KEYS[1], 'progress', ARGV[1]) end
if ARGV[2] ~= '' then redis.call('HSET', KEYS[1], 'preview', ARGV[2]) end
return redis.call('HGET', KEYS[1], 'cancel')
"""

#: KEYS: job, leases. ARGV: now. Moves an unfinished, uncancelled job's lease end.
_RENEW = """
local state = redis.call('HGET', KEYS[1], 'state')
local lease = redis.call('HGET', KEYS[1], 'lease_s')
if (state ~= 'queued' and state ~= 'running') or not lease or redis.call('HEXISTS', KEYS[1], 'cancel') == 1 then
  return 0
end
local until_s = tonumber(ARGV[1]) + tonumber(lease)
redis.call('HSET', KEYS[1], 'lease_until_s', tostring(until_s))
redis.call('ZADD', KEYS[2], until_s, redis.call('HGET', KEYS[1], 'id'))
return 1
"""

_FLOATS = ("created_s", "started_s", "finished_s", "lease_s", "lease_until_s", "estimate_s")
_JSON = ("progress", "preview", "result", "error")


class RedisJobStore(JobStore):
    """Jobs in a Redis server that every replica's workers share.

    Args:
        url: the server, ``redis://[:password@]host:port/db`` (``rediss://`` for TLS,
            ``unix:///path.sock``).
        prefix: the start of every key, so that several models or services can share one server.
        ttl_s: seconds a finished job (its result) is kept.
        timeout_s: seconds to connect and to wait for one answer.

    Raises:
        redis.ConnectionError: the server does not answer (checked once here, with ``PING``).
    """

    def __init__(self, url: str, *, prefix: str = "nst:jobs:", ttl_s: float = 3600.0, timeout_s: float = 5.0) -> None:
        super().__init__(ttl_s=ttl_s)
        self.url, self.prefix = url, prefix
        # decode_responses: every answer is a str, which redis-py's annotations cannot express.
        self._redis: Any = redis.Redis.from_url(url, decode_responses=True, socket_timeout=timeout_s,
                                                socket_connect_timeout=timeout_s, health_check_interval=30)
        self._redis.ping()
        self._finish, self._start, self._flag, self._report, self._renew = (
            self._redis.register_script(s) for s in (_FINISH, _START, _FLAG, _REPORT, _RENEW))

    def close(self) -> None:
        self._redis.close()

    def _key(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _worker_of(self, job_id: str) -> str | None:
        worker = self._redis.hget(self._key("job", job_id), "worker")
        return None if worker is None else str(worker)

    def create(self, worker: str, *, lease_s: float | None = None, estimate_s: float | None = None,
               now: float | None = None) -> Job:
        now = time.time() if now is None else now
        job_id = uuid.uuid4().hex
        seq = int(self._redis.incr(self._key("seq")))
        fields: dict[str, Any] = {"id": job_id, "seq": seq, "state": QUEUED, "worker": worker, "created_s": repr(now)}
        if lease_s is not None:
            fields |= {"lease_s": repr(float(lease_s)), "lease_until_s": repr(now + lease_s)}
        if estimate_s is not None:
            fields["estimate_s"] = repr(float(estimate_s))
        with self._redis.pipeline() as tx:  # MULTI/EXEC: the job appears with its indexes at once
            tx.hset(self._key("job", job_id), mapping=fields)
            tx.zadd(self._key("active", machine_of(worker)), {job_id: seq})
            tx.sadd(self._key("worker", worker), job_id)
            if lease_s is not None:
                tx.zadd(self._key("leases"), {job_id: now + lease_s})
            tx.execute()
        job = self.get(job_id)
        assert job is not None
        return job

    def get(self, job_id: str) -> Job | None:
        row = self._redis.hgetall(self._key("job", job_id))
        if not row or "state" not in row:
            return None
        values: dict[str, Any] = {k: None if row.get(k) is None else float(row[k]) for k in _FLOATS}
        values |= {k: None if row.get(k) is None else json.loads(row[k]) for k in _JSON}
        return Job(id=row["id"], state=row["state"], worker=row["worker"], cancel=row.get("cancel"), **values)

    def ahead(self, job_id: str) -> list[Job]:
        seq, worker = self._redis.hmget(self._key("job", job_id), ["seq", "worker"])
        if seq is None or worker is None:
            return []
        ids = self._redis.zrangebyscore(self._key("active", machine_of(worker)), "-inf", f"({seq}")
        return [job for job in map(self.get, ids) if job is not None]

    def active(self, machine: str) -> int:
        return int(self._redis.zcard(self._key("active", machine)))

    def start(self, job_id: str, *, now: float | None = None) -> Job | None:
        started = self._start(keys=[self._key("job", job_id)], args=[repr(time.time() if now is None else now)])
        return self.get(job_id) if started == 1 else None

    def report(self, job_id: str, *, progress: dict[str, Any] | None = None,
               preview: dict[str, Any] | None = None) -> str | None:
        reason = self._report(keys=[self._key("job", job_id)],
                              args=["" if progress is None else json.dumps(progress),
                                    "" if preview is None else json.dumps(preview)])
        return None if reason is None else str(reason)

    def _end(self, job_id: str, worker: str, state: str, now: float, result: dict[str, Any] | None,
             error: dict[str, Any] | None) -> bool:
        """End an unfinished job (one script: every index changes with it); whether it was unfinished."""
        ended = self._finish(keys=[self._key("job", job_id), self._key("active", machine_of(worker)),
                                   self._key("worker", worker), self._key("leases"), self._key("finished")],
                             args=[state, repr(now), "" if result is None else json.dumps(result),
                                   "" if error is None else json.dumps(error), repr(self.ttl_s)])
        return bool(ended)

    def finish(self, job_id: str, state: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, now: float | None = None) -> Job | None:
        self.check_final(state)
        worker = self._worker_of(job_id)
        if worker is not None:
            self._end(job_id, worker, state, time.time() if now is None else now, result, error)
        return self.get(job_id)

    def cancel(self, job_id: str, reason: str = BY_CLIENT, *, now: float | None = None) -> Job | None:
        worker = self._worker_of(job_id)
        if worker is None:
            return None
        state = self._flag(keys=[self._key("job", job_id), self._key("leases")], args=[reason])
        if state == QUEUED:
            self._end(job_id, worker, CANCELLED, time.time() if now is None else now, None, None)
        return self.get(job_id)

    def renew(self, job_id: str, *, now: float | None = None) -> None:
        self._renew(keys=[self._key("job", job_id), self._key("leases")], args=[repr(time.time() if now is None else now)])

    def expire_leases(self, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        ids = [str(i) for i in self._redis.zrangebyscore(self._key("leases"), "-inf", f"({now}")]
        expired = []
        for job_id in ids:
            job = self.cancel(job_id, LEASE_EXPIRED, now=now)
            if job is not None and job.cancel == LEASE_EXPIRED:
                expired.append(job_id)
            else:  # purged, or its lease was renewed meanwhile
                self._redis.zrem(self._key("leases"), job_id)
        return expired

    def fail_worker(self, worker: str, message: str, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        ids = sorted(str(i) for i in self._redis.smembers(self._key("worker", worker)))
        return [job_id for job_id in ids if self._end(job_id, worker, FAILED, now, None, worker_died(message))]

    def beat(self, worker: str, *, now: float | None = None) -> None:
        self._redis.zadd(self._key("beats"), {worker: time.time() if now is None else now})

    def fail_silent(self, after_s: float, *, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        failed: list[str] = []
        for worker in self._redis.zrangebyscore(self._key("beats"), "-inf", f"({now - after_s}"):
            failed += self.fail_worker(str(worker), f"worker {worker} stopped answering (no heartbeat for "
                                       f"{after_s:g} s) before the job ended", now=now)
            self._redis.zrem(self._key("beats"), worker)
        return failed

    def purge(self, *, now: float | None = None) -> int:
        now = time.time() if now is None else now
        ids = self._redis.zrangebyscore(self._key("finished"), "-inf", f"({now}")
        if not ids:
            return 0
        with self._redis.pipeline() as tx:
            tx.delete(*(self._key("job", str(i)) for i in ids))
            tx.zrem(self._key("finished"), *ids)
            tx.execute()
        return len(ids)
