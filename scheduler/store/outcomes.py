"""How runs end: the run row, the job's counters and dispatch state, retries and auto-pause.

Called inside the caller's write transaction, like everything in `scheduler.store.ledger`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from scheduler.config.model import Config
from scheduler.store.audit import Event, append
from scheduler.store.schema import jobs, runs
from scheduler.store.upstream_runs import record_own_end

DAEMON = "daemon"
# Outcomes that count as a failure of the slot (and are retried when the job allows it).
FAILURES = ("failed", "timed_out", "lost")
# The reason a run stopped by a daemon shutdown carries; such a run is retried at the next start
# when the job has retries, without counting as a failure.
SHUTDOWN_REASON = "interrupted by daemon shutdown"


@dataclass(frozen=True)
class Outcome:
    run_id: int
    status: str  # succeeded | failed | cancelled | timed_out | lost
    exit_code: int | None = None
    zenml_run_id: str | None = None
    zenml_run_name: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Effects:
    """What an outcome set in motion, for the daemon to act on."""

    retry_run_id: int | None = None
    paused_job: str | None = None
    zenml_run_name: str | None = None  # the ZenML run this run launched, if it got that far


def record_outcome(conn: Connection, outcome: Outcome, config: Config, now: datetime, stage: str = "run") -> Effects:
    """Finish a run row; schedule its retry, or count the slot's failure and pause the job after
    `pause_after_failures` consecutive failed slots."""
    run = conn.execute(select(runs).where(runs.c.id == outcome.run_id)).one()
    if recorded_before(run):
        return Effects()
    conn.execute(
        update(runs)
        .where(runs.c.id == run.id)
        .values(
            status=outcome.status, finished_at=now, exit_code=outcome.exit_code, error=outcome.error,
            zenml_run_id=outcome.zenml_run_id, zenml_run_name=outcome.zenml_run_name or run.zenml_run_name,
        )
    )  # fmt: skip
    duration = (now - run.started_at).total_seconds() if run.started_at else None
    details = {"run_id": run.id, "attempt": run.attempt, "exit_code": outcome.exit_code, "stage": stage,
               "zenml_run_id": outcome.zenml_run_id, "error": outcome.error, "duration_s": duration}  # fmt: skip
    events = [Event(f"run-{outcome.status}", DAEMON, run.job, run.run_key, run.config_revision, details)]
    job = config.jobs.get(run.job)
    effects = Effects()
    counters: dict[str, Any] = {"last_outcome": outcome.status, "last_outcome_at": now, "last_run_key": run.run_key}
    retries = job.spec.retries if job is not None else None
    if outcome.status == "succeeded":
        counters.update(succeeded=jobs.c.succeeded + 1, consecutive_failures=0)
    elif outcome.status == "cancelled" and outcome.error == SHUTDOWN_REASON and retries and run.attempt <= retries.max:
        retry_id = _insert_retry(conn, run, now, now)  # queued: the next daemon start runs it
        details = {"run_id": retry_id, "attempt": run.attempt + 1, "delay_s": 0, "after": "shutdown"}
        events.append(Event("retry-scheduled", DAEMON, run.job, run.run_key, run.config_revision, details))
        effects = Effects(retry_run_id=retry_id)
    elif outcome.status in FAILURES:
        counters.update(
            failed=jobs.c.failed + 1, error_count=jobs.c.error_count + 1, last_error=outcome.error,
            first_error_at=func.coalesce(jobs.c.first_error_at, now), last_error_at=now,
            last_dispatch="error", last_dispatch_at=now,
        )  # fmt: skip
        if retries is not None and run.attempt <= retries.max:
            delay = retries.delay(run.attempt)
            retry_id = _insert_retry(conn, run, now + timedelta(seconds=delay), now)
            events.append(Event("retry-scheduled", DAEMON, run.job, run.run_key, run.config_revision,
                                {"run_id": retry_id, "attempt": run.attempt + 1, "delay_s": delay,
                                 "after": outcome.status}))  # fmt: skip
            effects = Effects(retry_run_id=retry_id)
        else:
            counters["consecutive_failures"] = jobs.c.consecutive_failures + 1
    conn.execute(update(jobs).where(jobs.c.name == run.job).values(**counters))
    if effects.retry_run_id is None and outcome.status in FAILURES and job is not None:
        effects = Effects(paused_job=_maybe_auto_pause(conn, run.job, job.spec.pause_after_failures, now, events))
    append(conn, now, events)
    if effects.retry_run_id is None:  # the run's outcome for good: what `after:` triggers see
        record_own_end(conn, run, outcome.status, outcome.zenml_run_id, config, now)
    return replace(effects, zenml_run_name=outcome.zenml_run_name or run.zenml_run_name)


def recorded_before(run: Any) -> bool:
    """An outcome is recorded once, whoever reports it again (a daemon that was stalled while
    another recorded it, a retry after a commit whose answer was lost)."""
    return bool(run.status != "running")


def _insert_retry(conn: Connection, run: Any, not_before: datetime, now: datetime) -> int:
    values = {
        "run_key": run.run_key, "attempt": run.attempt + 1, "job": run.job, "trigger": run.trigger,
        "status": "queued", "scheduled_for": run.scheduled_for, "created_at": now, "source": "retry",
        "parameters_json": run.parameters_json, "config_revision": run.config_revision, "not_before": not_before,
        "upstream": run.upstream, "chain_json": run.chain_json,
    }  # fmt: skip
    return conn.execute(insert(runs).values(**values).returning(runs.c.id)).scalar_one()


def _maybe_auto_pause(conn: Connection, job: str, limit: int | None, now: datetime, events: list[Event]) -> str | None:
    if limit is None:
        return None
    row = conn.execute(select(jobs.c.consecutive_failures, jobs.c.paused).where(jobs.c.name == job)).one()
    if row.paused or row.consecutive_failures < limit:
        return None
    reason = f"paused after {row.consecutive_failures} consecutive failed slots (pause_after_failures: {limit})"
    conn.execute(update(jobs).where(jobs.c.name == job).values(paused=True, paused_reason=reason, updated_at=now))
    events.append(
        Event("auto-pause", DAEMON, job, details={"reason": reason, "consecutive_failures": row.consecutive_failures})
    )
    return job


def clear_errors(conn: Connection, job: str, source: str, now: datetime) -> bool:
    """Reset a job's error state (not its pause); audited. False when the job is unknown."""
    row = conn.execute(
        select(jobs.c.error_count, jobs.c.consecutive_failures, jobs.c.last_error).where(jobs.c.name == job)
    ).first()
    if row is None:
        return False
    conn.execute(
        update(jobs)
        .where(jobs.c.name == job)
        .values(consecutive_failures=0, error_count=0, first_error_at=None, last_error_at=None, last_error=None)
    )
    previous = {
        "error_count": row.error_count,
        "consecutive_failures": row.consecutive_failures,
        "last_error": row.last_error,
    }
    append(conn, now, [Event("clear-errors", source, job, details={"previous": previous})])
    return True
