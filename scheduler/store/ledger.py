"""The run ledger after a fire: the queue the launcher reads, claiming a run for launch, its
process, expiring stale queued runs at start, and what the ZenML repair reported.

Every function takes a connection inside the caller's write transaction, so a run row and the
audit events that explain it commit together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, func, or_, select, update

from scheduler.config.model import Config
from scheduler.store.audit import Event, append
from scheduler.store.schema import jobs, runs

DAEMON = "daemon"


def queued_runs(conn: Connection, now: datetime, limit: int, per_job: int, skip_jobs: Iterable[str] = ()) -> list[Any]:
    """Queued runs whose jitter or retry back-off has passed, oldest first, at most `per_job` of
    each job, none of `skip_jobs` (jobs at their limit): a job with thousands queued (an API
    burst) does not hide other jobs' runs, nor cost a scan of its queue while it cannot start more."""
    due = or_(runs.c.not_before.is_(None), runs.c.not_before <= now)
    place = func.row_number().over(partition_by=runs.c.job, order_by=runs.c.id).label("place")
    waiting = [runs.c.status == "queued", due]
    if skip_jobs:
        waiting.append(runs.c.job.not_in(list(skip_jobs)))
    ranked = select(runs.c.id, place).where(*waiting).subquery()
    chosen = select(ranked.c.id).where(ranked.c.place <= per_job)
    return conn.execute(select(runs).where(runs.c.id.in_(chosen)).order_by(runs.c.id).limit(limit)).all()


def expire_queued(conn: Connection, config: Config, now: datetime, grace: timedelta) -> int:
    """At start: a scheduled run still queued from before, whose slot is now past its grace window,
    is skipped (on the record) instead of running hours late."""
    expired = []
    for run in conn.execute(
        select(runs).where(runs.c.status == "queued", runs.c.trigger != "manual", runs.c.attempt == 1)
    ):
        job = config.jobs.get(run.job)
        limit = timedelta(seconds=job.grace) if job is not None and job.grace is not None else grace
        if run.scheduled_for is not None and now - (run.not_before or run.scheduled_for) > limit:
            expired.append(run)
    events = []
    for run in expired:
        late = (now - run.scheduled_for).total_seconds()
        reason = f"missed: still queued {late:.0f}s after its slot, past the grace window"
        conn.execute(update(runs).where(runs.c.id == run.id).values(status="skipped", reason=reason, finished_at=now))
        details = {"code": "missed", "run_id": run.id, "reason": "queued at shutdown; past the grace window at start"}
        events.append(Event("skip", DAEMON, run.job, run.run_key, run.config_revision, details))
    append(conn, now, events)
    return len(expired)


def mark_started(conn: Connection, run: Any, log_path: str, now: datetime) -> bool:
    """Claim a queued run for launch; committed before the child is spawned. False when the run
    is no longer queued (cancelled by a `replace`, or skipped, since it was read): not launched."""
    claimed = conn.execute(
        update(runs)
        .where(runs.c.id == run.id, runs.c.status == "queued")
        .values(status="running", started_at=now, log_path=log_path)
    ).rowcount
    if claimed:
        conn.execute(update(jobs).where(jobs.c.name == run.job).values(runs_total=jobs.c.runs_total + 1))
    return bool(claimed)


def runs_in(conn: Connection, statuses: tuple[str, ...]) -> list[Any]:
    return conn.execute(select(runs).where(runs.c.status.in_(statuses)).order_by(runs.c.id)).all()


def set_pid(
    conn: Connection, run: Any, pid: int, pid_start: str | None, run_name: str, log_path: str, now: datetime
) -> None:
    conn.execute(update(runs).where(runs.c.id == run.id).values(pid=pid, pid_start=pid_start, zenml_run_name=run_name))
    append(
        conn,
        now,
        [
            Event(
                "run-started",
                DAEMON,
                run.job,
                run.run_key,
                run.config_revision,
                {
                    "run_id": run.id,
                    "pid": pid,
                    "zenml_run_name": run_name,
                    "log": log_path,
                    "launch": json.loads(run.parameters_json or "{}"),
                },
            )
        ],
    )


def exhausted_jobs(conn: Connection, config: Config) -> set[str]:
    """Jobs whose max_runs is used up: they are no longer timed."""
    limited = [name for name, job in config.jobs.items() if job.spec.max_runs]
    if not limited:
        return set()
    rows = conn.execute(select(jobs.c.name, jobs.c.launched).where(jobs.c.name.in_(limited)))
    return {row.name for row in rows if config.jobs[row.name].finished(row.launched)}


def record_repair(conn: Connection, run_id: int, report: dict[str, Any] | None, now: datetime) -> None:
    """Audit what the ZenML-side repair of an ended run found and did."""
    run = conn.execute(select(runs.c.job, runs.c.run_key, runs.c.config_revision).where(runs.c.id == run_id)).one()
    details = {"run_id": run_id, **(report or {"error": "the repair process gave no report"})}
    append(conn, now, [Event("zenml-run-reconciled", DAEMON, run.job, run.run_key, run.config_revision, details)])
