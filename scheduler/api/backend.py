"""What the HTTP API may do to the daemon: a narrow handle over its state database and config.

Triggers are recorded by `scheduler.api.trigger_recorder.TriggerRecorder` through the same `fires.fire` the main
loop uses, so the caller gets its run record back at once; what only the main loop may do (wake
the launcher, stop a replaced run) is handed to it through its inbox. Reads go straight to the
database. The API's own audit events are written in batches by `AuditWriter`.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError, OperationalError

from scheduler import tuning
from scheduler.api.anonymous_tally import AnonymousTally
from scheduler.api.overrides import Overrides
from scheduler.api.trigger_recorder import Triggered, TriggerRecorder
from scheduler.config.model import Config, Job
from scheduler.policy.keys import api_run_key, manual_run_key
from scheduler.quiet_log import QuietLog
from scheduler.store import inbox
from scheduler.store.audit import Event, append
from scheduler.store.engine import Store
from scheduler.store.fires import FireResult
from scheduler.store.run_records import latest_attempt, run_record
from scheduler.store.schema import jobs, runs
from scheduler.timing.clock import utcnow
from scheduler.timing.triggers import fire_times

log = logging.getLogger(__name__)


class AuditWriter:
    """Writes API audit events in small batches from its own thread, so that recording each
    request costs the request nothing; `flush` on shutdown writes what is left. Requests without
    a valid key go to `anonymous` instead and are written in aggregate as their intervals end."""

    def __init__(
        self, store: Store, now: Callable[[], datetime] = utcnow, interval: float = tuning.API_AUDIT_FLUSH_S
    ) -> None:
        self.store = store
        self.now = now
        self.interval = interval
        self.anonymous = AnonymousTally(now=now)
        self._failing = QuietLog(log, every_s=tuning.API_REFUSAL_LOG_S)
        self._queue: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="api-audit", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, event: Event) -> None:
        self._queue.put(event)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception:  # the database is away: the events wait in the queue for the next try
                self._failing.error("writing API audit events failed; retrying", exc_info=True)

    def flush(self, everything: bool = False) -> None:
        """Write the queued events, and the anonymous counts that are due (all when `everything`)."""
        for event in self.anonymous.drain(everything):
            self._queue.put(event)
        batch: list[Event] = []
        while True:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        if not batch:
            return
        try:
            with self.store.write() as conn:
                append(conn, self.now(), batch)
        except OperationalError:  # the database is away: the batch waits for the next try
            for event in batch:
                self._queue.put(event)
            raise
        except DBAPIError as exc:  # the database refuses this batch: never retry it for ever
            log.error("the state database refused %d API audit event(s); writing them one by one: %s",
                      len(batch), exc.orig)  # fmt: skip
            self._one_by_one(batch)

    def _one_by_one(self, batch: list[Event]) -> None:
        """Write each event alone; one the database refuses is replaced by `audit-write-failed`,
        so the trail says something was refused and the queue moves on."""
        for event in batch:
            try:
                with self.store.write() as conn:
                    append(conn, self.now(), [event])
            except OperationalError:
                self._queue.put(event)
                raise
            except DBAPIError as exc:
                failed = Event("audit-write-failed", event.source, details={
                    "event": event.event, "error": str(exc.orig)[:200], "route": event.details.get("route"),
                })  # fmt: skip
                with self.store.write() as conn:
                    append(conn, self.now(), [failed])

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=tuning.THREAD_STOP_S)
        self.flush(everything=True)


class ApiBackend:
    """The daemon as the API sees it. Every method is safe to call from any thread."""

    def __init__(
        self,
        store: Store,
        config: Callable[[], Config],
        grace: timedelta,
        hand_over: Callable[[FireResult], None],
        health: Callable[[], Mapping[str, bool]],
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.config = config
        self.health = health
        self.now = now
        self.audit = AuditWriter(store, now)
        self.recorder = TriggerRecorder(store, config, grace, hand_over, now)

    # ---- health ------------------------------------------------------------------------------
    def readiness(self) -> dict[str, bool]:
        checks = dict(self.health())
        try:
            with self.store.read() as conn:
                conn.execute(text("SELECT 1"))
            checks["database"] = True
        except Exception:
            checks["database"] = False
        return checks

    def accepting(self) -> bool:
        return bool(self.health().get("scheduler", False))

    # ---- jobs --------------------------------------------------------------------------------
    def jobs(self) -> list[dict[str, Any]]:
        config = self.config()
        with self.store.read() as conn:
            rows = {r.name: r for r in conn.execute(select(jobs).where(jobs.c.name.in_(list(config.jobs))))}
        now = self.now()
        return [self._job_view(job, rows.get(name), now) for name, job in config.jobs.items()]

    def job(self, name: str) -> dict[str, Any] | None:
        job = self.config().jobs.get(name)
        if job is None:
            return None
        with self.store.read() as conn:
            row = conn.execute(select(jobs).where(jobs.c.name == name)).first()
        return self._job_view(job, row, self.now())

    def _job_view(self, job: Job, row: Any, now: datetime) -> dict[str, Any]:
        finished = row is not None and job.finished(row.launched)
        timed = job.spec.enabled and not job.is_watch and not finished
        upcoming = fire_times(job.trigger, now, tuning.API_NEXT_FIRES) if timed else []
        state = {
            "paused": bool(row and row.paused),
            "paused_reason": row.paused_reason if row else None,
            "runs_total": row.runs_total if row else 0,
            "succeeded": row.succeeded if row else 0,
            "failed": row.failed if row else 0,
            "skipped": row.skipped if row else 0,
            "consecutive_failures": row.consecutive_failures if row else 0,
            "last_outcome": row.last_outcome if row else None,
            "last_outcome_at": row.last_outcome_at.isoformat() if row and row.last_outcome_at else None,
            "last_run_key": row.last_run_key if row else None,
            "last_error": row.last_error if row else None,
        }
        return {
            "name": job.name,
            "pipeline": job.spec.pipeline,
            "trigger": job.trigger_text,
            "timezone": job.spec.timezone,
            "enabled": job.spec.enabled,
            "description": job.spec.description,
            "overridable": list(job.spec.api.overridable),
            "next_fires": [t.isoformat() for t in upcoming],
            "state": state,
            "definition": job.spec_dict(),
        }

    def set_paused(self, name: str, paused: bool, source: str, reason: str | None) -> dict[str, Any] | None:
        with self.store.write() as conn:
            if not inbox.set_paused(conn, name, paused, source, self.now(), reason):
                return None
        return self.job(name)

    # ---- runs --------------------------------------------------------------------------------
    def trigger(self, job: str, overrides: Overrides, idempotency_key: str | None, source: str) -> Triggered:
        """Record a manual run of `job` (declared in the current config) and return its record.

        Raises:
            IdempotencyConflict: The key was used before for different inputs.
        """
        run_key = (
            api_run_key(job, idempotency_key)
            if idempotency_key is not None
            else manual_run_key(job, self.now(), uuid.uuid4().hex[:12])
        )
        return self.recorder.submit(job, run_key, overrides, source).result(timeout=tuning.API_TRIGGER_WAIT_S)

    def run(self, run_key: str) -> dict[str, Any] | None:
        with self.store.read() as conn:
            row = latest_attempt(conn, run_key)
        return run_record(row) if row is not None else None

    def runs(self, job: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        stmt = select(runs).order_by(runs.c.id.desc()).limit(limit)
        if job is not None:
            stmt = stmt.where(runs.c.job == job)
        if status is not None:
            stmt = stmt.where(runs.c.status == status)
        with self.store.read() as conn:
            return [run_record(r) for r in conn.execute(stmt)]

    def run_counts(self) -> tuple[int, int]:
        """(running, queued) runs, for the gauges."""
        with self.store.read() as conn:
            counts = dict(
                conn.execute(
                    select(runs.c.status, func.count())
                    .where(runs.c.status.in_(("running", "queued")))
                    .group_by(runs.c.status)
                ).all()
            )
        return int(counts.get("running", 0)), int(counts.get("queued", 0))
