"""Record API triggers in batches: one thread, one write transaction per batch (group commit).

Each request thread hands its trigger over and waits for the batch it landed in to commit. On
SQLite every write takes the database's single write lock; a transaction per request makes the
request threads and the main loop queue for that lock, and SQLite's busy handler sleeps in
steps of up to 100 ms while they do. One writer that takes whatever has queued up meanwhile
keeps the lock free for the main loop and the cost per trigger small, whatever the load.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from scheduler import tuning
from scheduler.api.overrides import Overrides
from scheduler.config.model import Config, Job
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.launch_spec import launch_spec
from scheduler.store import fires
from scheduler.store.engine import Store
from scheduler.store.fires import FireResult
from scheduler.store.run_records import latest_attempts, run_record
from scheduler.store.schema import runs

log = logging.getLogger(__name__)


class IdempotencyConflict(Exception):
    """The Idempotency-Key was first used for a run with different inputs."""


@dataclass(frozen=True)
class Triggered:
    record: dict[str, Any]
    replayed: bool  # an earlier request with the same Idempotency-Key made this run


@dataclass(frozen=True)
class PendingTrigger:
    job: str
    run_key: str
    overrides: Overrides
    source: str
    done: Future[Triggered]


class TriggerRecorder:
    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        grace: timedelta,
        hand_over: Callable[[FireResult], None],
        now: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.config = config
        self.grace = grace
        self.hand_over = hand_over
        self.now = now
        self._queue: queue.SimpleQueue[PendingTrigger | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="api-triggers", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread.is_alive():  # not started when the daemon's start-up failed before it
            self._thread.join(timeout=10)

    def submit(self, job: str, run_key: str, overrides: Overrides, source: str) -> Future[Triggered]:
        done: Future[Triggered] = Future()
        self._queue.put(PendingTrigger(job, run_key, overrides, source, done))
        return done

    def _loop(self) -> None:
        last_batch_at = 0.0
        while True:
            first = self._queue.get()
            if first is None:
                return
            # Under load (another batch moments ago), linger a little: callers that are about to
            # send their next trigger then share this transaction instead of queueing behind it.
            linger_until = (
                time.monotonic() + tuning.TRIGGER_LINGER_S
                if time.monotonic() - last_batch_at < tuning.TRIGGER_BUSY_S
                else 0.0
            )
            batch: list[PendingTrigger] = [first]
            stopping = False
            while len(batch) < tuning.TRIGGER_MAX_BATCH:
                try:
                    item = self._queue.get(timeout=max(0.0, linger_until - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._record(batch)
            last_batch_at = time.monotonic()
            if stopping:
                return

    def _record(self, batch: list[PendingTrigger]) -> None:
        config, now = self.config(), self.now()
        try:
            with self.store.write() as conn:
                keys = list({p.run_key for p in batch})
                earlier = {
                    row.run_key: row
                    for row in conn.execute(select(runs).where(runs.c.run_key.in_(keys), runs.c.attempt == 1))
                }
                fresh: dict[str, PendingTrigger] = {}
                for pending in batch:
                    if pending.run_key not in earlier and pending.run_key not in fresh:
                        fresh[pending.run_key] = pending
                requests = [
                    FireRequest(p.job, "manual", p.run_key, p.source,
                                parameters=p.overrides.parameters, steps=p.overrides.steps)
                    for p in fresh.values()
                ]  # fmt: skip
                result = fires.fire(conn, requests, config, now, self.grace) if requests else None
                latest = latest_attempts(conn, keys)
        except Exception as exc:  # the database is away: every waiting request gets the error
            log.exception("recording %d API trigger(s) failed", len(batch))
            for pending in batch:
                pending.done.set_exception(exc)
            return
        if result is not None:
            self.hand_over(result)
        for pending in batch:
            first_seen = fresh.get(pending.run_key) is pending
            row = latest.get(pending.run_key)
            if row is None:
                pending.done.set_exception(RuntimeError(f"run {pending.run_key!r} was not recorded"))
                continue
            if not first_seen:
                spec = json.loads(row.parameters_json or "{}")
                if not _same_inputs(spec, config.jobs.get(pending.job), pending.overrides):
                    pending.done.set_exception(
                        IdempotencyConflict(
                            f"Idempotency-Key already used for run {pending.run_key!r} with different inputs; "
                            "use a new key for a different run"
                        )
                    )
                    continue
            pending.done.set_result(Triggered(run_record(row), replayed=not first_seen))


def _same_inputs(stored: dict[str, Any], job: Job | None, overrides: Overrides) -> bool:
    """Whether a retry asks for the same run: the parameters and steps it would resolve to."""
    if job is None:
        return True
    wanted = launch_spec(job, overrides.parameters, overrides.steps)
    return (stored.get("parameters"), stored.get("steps")) == (wanted["parameters"], wanted["steps"])
