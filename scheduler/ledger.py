"""Run, job and request bookkeeping in the state database, each change with its audit event.

Every function takes a connection inside the caller's write transaction, so a run row and the
audit events that explain it commit together or not at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from scheduler.audit import Event, append
from scheduler.config import Config, Job
from scheduler.planner import (
    ACTIVE_STATUSES,
    FireRequest,
    JobState,
    Launch,
    Skip,
    decide,
)
from scheduler.store import jobs, requests, runs

DAEMON = "daemon"


def launch_spec(job: Job, overrides: dict[str, Any]) -> dict[str, Any]:
    """The fully resolved inputs of one run, as stored on its row and shown in the audit trail."""
    return {
        "pipeline": job.spec.pipeline,
        "parameters": {**job.spec.parameters, **overrides},
        "steps": {name: step.model_dump() for name, step in job.spec.steps.items()},
        "enable_cache": job.spec.enable_cache,
    }


@dataclass(frozen=True)
class FireResult:
    queued: list[int]
    skipped: int
    duplicates: int


def fire(conn: Connection, batch: Iterable[FireRequest], config: Config, now: datetime, grace: timedelta) -> FireResult:
    """Decide and record each request: a queued run row, a skipped row, or a duplicate (audit only).

    One statement per kind of write, whatever the batch size: a burst of a thousand slots is
    one multi-row INSERT, not a thousand round trips.
    """
    batch = list(batch)
    names = {request.job for request in batch}
    paused = dict(conn.execute(select(jobs.c.name, jobs.c.paused).where(jobs.c.name.in_(names))).all())
    active = dict(
        conn.execute(
            select(runs.c.job, func.count())
            .where(runs.c.job.in_(names), runs.c.status.in_(ACTIVE_STATUSES))
            .group_by(runs.c.job)
        ).all()
    )
    keys = {request.run_key for request in batch}
    taken = set(conn.execute(select(runs.c.run_key).where(runs.c.run_key.in_(keys), runs.c.attempt == 1)).scalars())
    rows: list[dict[str, Any]] = []
    decided: list[tuple[FireRequest, Launch | Skip | None, dict[str, Any] | None]] = []
    for request in batch:
        if request.run_key in taken:
            decided.append((request, None, None))
            continue
        taken.add(request.run_key)
        job = config.jobs.get(request.job)
        state = JobState(job is not None, paused.get(request.job, False), active.get(request.job, 0))
        decision = decide(request, state, now, grace)
        spec = launch_spec(job, request.parameters) if job is not None else None
        row = {
            "run_key": request.run_key, "attempt": 1, "job": request.job, "trigger": request.trigger,
            "scheduled_for": request.scheduled_for, "created_at": now, "source": request.source,
            "config_revision": config.revision, "parameters_json": json.dumps(spec) if spec else None,
            "status": "queued", "reason": None, "finished_at": None,
        }  # fmt: skip
        if isinstance(decision, Skip):
            row.update(status="skipped", reason=f"{decision.code}: {decision.reason}", finished_at=now)
        else:
            active[request.job] = active.get(request.job, 0) + 1
        rows.append(row)
        decided.append((request, decision, spec))
    ids = _insert_ignoring_duplicates(conn, rows)
    events, queued, skipped, duplicates = [], [], 0, 0
    for request, decision, spec in decided:
        base = {"job": request.job, "run_key": request.run_key, "config_revision": config.revision}
        slot = {
            "scheduled_for": request.scheduled_for.isoformat() if request.scheduled_for else None,
            "trigger": request.trigger,
        }
        run_id = ids.get(request.run_key)
        if decision is None or run_id is None:
            duplicates += 1
            reason = "run key already taken; slot not launched twice"
            events.append(
                Event("skip", request.source, **base, details={**slot, "code": "duplicate", "reason": reason})
            )
        elif isinstance(decision, Launch):
            queued.append(run_id)
            events.append(Event("fire", request.source, **base, details={**slot, "run_id": run_id, "launch": spec}))
        else:
            skipped += 1
            details = {**slot, "code": decision.code, "reason": decision.reason}
            events.append(Event("skip", request.source, **base, details=details))
    _update_jobs_after_fire(conn, [(r, d) for r, d, _ in decided if d is not None], config, now)
    append(conn, now, events)
    return FireResult(queued, skipped, duplicates)


def _insert_ignoring_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert run rows in one statement; return {run_key: id} of those the unique key let in."""
    if not rows:
        return {}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(runs).on_conflict_do_nothing().returning(runs.c.id, runs.c.run_key)
    return {row.run_key: row.id for row in conn.execute(stmt, rows)}


def _update_jobs_after_fire(
    conn: Connection, decided: list[tuple[FireRequest, Launch | Skip]], config: Config, now: datetime
) -> None:
    """Advance each job's last slot and next fire time, and count its skips, in two statements."""
    slots: dict[str, datetime] = {}
    skips: dict[str, tuple[int, str]] = {}
    for request, decision in decided:
        if request.scheduled_for is not None and request.trigger != "manual":
            slots[request.job] = max(slots.get(request.job, request.scheduled_for), request.scheduled_for)
        if isinstance(decision, Skip):
            skips[request.job] = (skips.get(request.job, (0, ""))[0] + 1, request.run_key)
    if slots:
        slot = bindparam("b_slot")
        conn.execute(
            update(jobs)
            .where(jobs.c.name == bindparam("b_name"))
            .values(
                next_fire_at=bindparam("b_next"),
                last_slot=case(
                    (or_(jobs.c.last_slot.is_(None), jobs.c.last_slot < slot), slot), else_=jobs.c.last_slot
                ),
            ),
            [
                {"b_name": name, "b_slot": slot_time, "b_next": _next_fire(config, name, max(slot_time, now))}
                for name, slot_time in slots.items()
            ],
        )
    if skips:
        conn.execute(
            update(jobs)
            .where(jobs.c.name == bindparam("b_name"))
            .values(
                skipped=jobs.c.skipped + bindparam("b_count"),
                last_outcome="skipped",
                last_outcome_at=now,
                last_run_key=bindparam("b_key"),
            ),
            [{"b_name": name, "b_count": count, "b_key": key} for name, (count, key) in skips.items()],
        )


def _next_fire(config: Config, name: str, after: datetime) -> datetime | None:
    job = config.jobs.get(name)
    return job.trigger.next_after(after) if job is not None else None


def _count_outcome(conn: Connection, job: str, outcome: str, run_key: str, now: datetime) -> None:
    counter = {"succeeded": jobs.c.succeeded, "failed": jobs.c.failed, "skipped": jobs.c.skipped}.get(outcome)
    values: dict[Any, Any] = {"last_outcome": outcome, "last_outcome_at": now, "last_run_key": run_key}
    if counter is not None:
        values[counter.name] = counter + 1
    conn.execute(update(jobs).where(jobs.c.name == job).values(**values))


def take_requests(conn: Connection, limit: int = 1000) -> list[FireRequest]:
    """Claim manual requests written by other processes (the CLI, later the API)."""
    rows = conn.execute(
        select(requests).where(requests.c.handled_at.is_(None)).order_by(requests.c.id).limit(limit)
    ).all()
    if not rows:
        return []
    conn.execute(update(requests).where(requests.c.id.in_([r.id for r in rows])).values(handled_at=func.now()))
    return [
        FireRequest(
            job=r.job,
            trigger="manual",
            run_key=r.run_key,
            source=r.source,
            parameters=json.loads(r.parameters_json or "{}"),
        )
        for r in rows
    ]


def add_request(
    conn: Connection,
    job: str,
    run_key: str,
    parameters: dict[str, Any],
    source: str,
    now: datetime,
    revision: str | None,
) -> None:
    conn.execute(
        insert(requests).values(
            job=job, run_key=run_key, parameters_json=json.dumps(parameters), source=source, created_at=now
        )
    )
    append(conn, now, [Event("manual-trigger", source, job, run_key, revision, {"parameters": parameters})])


def queued_runs(conn: Connection, limit: int) -> list[Any]:
    return conn.execute(select(runs).where(runs.c.status == "queued").order_by(runs.c.id).limit(limit)).all()


def mark_started(conn: Connection, run: Any, log_path: str, now: datetime) -> None:
    """Claim a queued run for launch; committed before the child is spawned."""
    conn.execute(update(runs).where(runs.c.id == run.id).values(status="running", started_at=now, log_path=log_path))
    conn.execute(update(jobs).where(jobs.c.name == run.job).values(runs_total=jobs.c.runs_total + 1))


def mark_launch_failed(conn: Connection, run: Any, error: str, now: datetime) -> None:
    conn.execute(update(runs).where(runs.c.id == run.id).values(status="failed", error=error, finished_at=now))
    _count_outcome(conn, run.job, "failed", run.run_key, now)
    append(
        conn,
        now,
        [
            Event(
                "run-failed",
                DAEMON,
                run.job,
                run.run_key,
                run.config_revision,
                {"run_id": run.id, "error": error, "stage": "launch"},
            )
        ],
    )


@dataclass(frozen=True)
class Outcome:
    run_id: int
    status: str  # succeeded | failed | cancelled | lost
    exit_code: int | None = None
    zenml_run_id: str | None = None
    zenml_run_name: str | None = None
    error: str | None = None


def record_outcome(conn: Connection, outcome: Outcome, now: datetime) -> None:
    run = conn.execute(select(runs).where(runs.c.id == outcome.run_id)).one()
    conn.execute(
        update(runs)
        .where(runs.c.id == outcome.run_id)
        .values(
            status=outcome.status,
            finished_at=now,
            exit_code=outcome.exit_code,
            zenml_run_id=outcome.zenml_run_id,
            zenml_run_name=outcome.zenml_run_name,
            error=outcome.error,
        )
    )
    _count_outcome(conn, run.job, outcome.status, run.run_key, now)
    duration = (now - run.started_at).total_seconds() if run.started_at else None
    append(
        conn,
        now,
        [
            Event(
                f"run-{outcome.status}",
                DAEMON,
                run.job,
                run.run_key,
                run.config_revision,
                {
                    "run_id": run.id,
                    "exit_code": outcome.exit_code,
                    "zenml_run_id": outcome.zenml_run_id,
                    "error": outcome.error,
                    "duration_s": duration,
                },
            )
        ],
    )


def runs_in(conn: Connection, statuses: tuple[str, ...]) -> list[Any]:
    return conn.execute(select(runs).where(runs.c.status.in_(statuses)).order_by(runs.c.id)).all()


def set_paused(conn: Connection, job: str, paused: bool, source: str, now: datetime, reason: str | None = None) -> bool:
    """Pause or resume; returns False when the job is unknown. Audited either way it changes."""
    row = conn.execute(select(jobs.c.paused).where(and_(jobs.c.name == job, jobs.c.removed_at.is_(None)))).first()
    if row is None:
        return False
    conn.execute(
        update(jobs)
        .where(jobs.c.name == job)
        .values(paused=paused, paused_reason=reason if paused else None, updated_at=now)
    )
    append(
        conn,
        now,
        [Event("pause" if paused else "resume", source, job, details={"was_paused": row.paused, "reason": reason})],
    )
    return True


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
