"""Recording fires: each request decided by the policy core and written as a run row (queued or
skipped) or a duplicate, with its audit event, inside the caller's write transaction."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from scheduler.config.model import Config
from scheduler.policy.decide import JobState, Launch, Policy, Skip, decide, policy_of
from scheduler.policy.fire_request import ACTIVE_STATUSES, FireRequest
from scheduler.policy.launch_spec import launch_spec
from scheduler.store.audit import Event, append
from scheduler.store.schema import jobs, runs

DAEMON = "daemon"


@dataclass(frozen=True)
class FireResult:
    queued: list[int]
    skipped: int
    duplicates: int
    replaced: list[int] = field(default_factory=list)  # running runs to stop (concurrency: replace)
    exhausted: set[str] = field(default_factory=set)  # jobs that reached max_runs
    queued_jobs: set[str] = field(default_factory=set)  # the jobs of the queued runs


def _job_states(conn: Connection, names: set[str], config: Config) -> dict[str, JobState]:
    stored = {
        row.name: row
        for row in conn.execute(select(jobs.c.name, jobs.c.paused, jobs.c.launched).where(jobs.c.name.in_(names)))
    }
    # Counted, not fetched: a job may have thousands of runs queued (an API burst), and this runs
    # for every batch. Only `concurrency: replace` needs the ids of the runs it ends.
    counts: dict[tuple[str, str], int] = {
        (row.job, row.status): row.n
        for row in conn.execute(
            select(runs.c.job, runs.c.status, func.count().label("n"))
            .where(runs.c.job.in_(names), runs.c.status.in_(ACTIVE_STATUSES))
            .group_by(runs.c.job, runs.c.status)
        )
    }
    replacing = [n for n in names if n in config.jobs and config.jobs[n].spec.concurrency == "replace"]
    active_ids: dict[str, list[int]] = {name: [] for name in replacing}
    if replacing:
        for row in conn.execute(
            select(runs.c.id, runs.c.job).where(runs.c.job.in_(replacing), runs.c.status.in_(ACTIVE_STATUSES))
        ):
            active_ids[row.job].append(row.id)
    states = {}
    for name in names:
        row = stored.get(name)
        states[name] = JobState(
            exists=name in config.jobs, paused=bool(row and row.paused), launched=row.launched if row else 0,
            running=counts.get((name, "running"), 0), queued=counts.get((name, "queued"), 0),
            active_ids=tuple(active_ids.get(name, ())),
        )  # fmt: skip
    return states


def fire(conn: Connection, batch: Iterable[FireRequest], config: Config, now: datetime, grace: timedelta) -> FireResult:
    """Decide and record each request: a queued run row, a skipped row, or a duplicate (audit only).

    One statement per kind of write, whatever the batch size: a burst of a thousand slots is
    one multi-row INSERT, not a thousand round trips. A slot skipped because its job is paused
    gets no row: it stays free for the catch-up that runs on resume.
    """
    batch = list(batch)
    states = _job_states(conn, {request.job for request in batch}, config)
    keys = {request.run_key for request in batch}
    taken = set(conn.execute(select(runs.c.run_key).where(runs.c.run_key.in_(keys), runs.c.attempt == 1)).scalars())
    rows: list[dict[str, Any]] = []
    decided: list[tuple[FireRequest, Launch | Skip | None, dict[str, Any] | None]] = []
    replaced: list[int] = []
    # concurrency: replace inside one batch (catch-up, a burst of API triggers): a later launch
    # replaces the earlier ones of the batch too, which have no run id until they are inserted.
    replaced_keys: list[str] = []
    launched_in_batch: dict[str, list[str]] = {}
    for request in batch:
        if request.run_key in taken:
            decided.append((request, None, None))
            continue
        job = config.jobs.get(request.job)
        state = states[request.job]
        decision = decide(request, state, policy_of(job, grace) if job else Policy(grace), now)
        spec = launch_spec(job, request.parameters, request.steps) if job is not None else None
        decided.append((request, decision, spec))
        if isinstance(decision, Skip) and decision.code == "paused":
            continue
        taken.add(request.run_key)
        row = {
            "run_key": request.run_key, "attempt": 1, "job": request.job, "trigger": request.trigger,
            "scheduled_for": request.scheduled_for, "created_at": now, "source": request.source,
            "config_revision": config.revision, "parameters_json": json.dumps(spec) if spec else None,
            "status": "queued", "reason": None, "finished_at": None, "not_before": None,
            "upstream": request.upstream, "chain_json": json.dumps(list(request.chain)) if request.chain else None,
        }  # fmt: skip
        if isinstance(decision, Skip):
            row.update(status="skipped", reason=f"{decision.code}: {decision.reason}", finished_at=now)
        else:
            row["not_before"] = decision.not_before
            replaced.extend(decision.replaces)
            replacing = job is not None and job.spec.concurrency == "replace"
            if replacing:
                replaced_keys += launched_in_batch.get(request.job, [])
                launched_in_batch[request.job] = []
            launched_in_batch.setdefault(request.job, []).append(request.run_key)
            states[request.job] = replace(
                state, queued=1 if replacing else state.queued + 1, running=0 if replacing else state.running,
                launched=state.launched + (request.trigger != "manual"),
                active_ids=() if replacing else state.active_ids,
            )  # fmt: skip
        rows.append(row)
    ids = _insert_ignoring_duplicates(conn, rows)
    replaced += [ids[key] for key in replaced_keys if key in ids]
    events, queued, skipped, duplicates = [], [], 0, 0
    queued_jobs: set[str] = set()
    for request, decision, spec in decided:
        base = {"job": request.job, "run_key": request.run_key, "config_revision": config.revision}
        slot = {
            "scheduled_for": request.scheduled_for.isoformat() if request.scheduled_for else None,
            "trigger": request.trigger,
        }
        run_id = ids.get(request.run_key)
        if decision is None or (run_id is None and not (isinstance(decision, Skip) and decision.code == "paused")):
            duplicates += 1
            reason = "run key already taken; slot not launched twice"
            events.append(
                Event("skip", request.source, **base, details={**slot, "code": "duplicate", "reason": reason})
            )
        elif isinstance(decision, Launch):
            queued.append(run_id)
            queued_jobs.add(request.job)
            details = {**slot, "run_id": run_id, "launch": spec}
            if request.files:
                details["files"] = list(request.files)
            if request.upstream:
                details["upstream"] = request.upstream
            if decision.not_before:
                details["not_before"] = decision.not_before.isoformat()
            if decision.replaces:
                details["replaces"] = list(decision.replaces)
            events.append(Event("fire", request.source, **base, details=details))
        else:
            skipped += 1
            details = {**slot, "code": decision.code, "reason": decision.reason}
            if request.files:
                details["files"] = list(request.files)
            if request.upstream:
                details["upstream"] = request.upstream
            events.append(Event("skip", request.source, **base, details=details))
    cancelled_queued = _end_replaced(conn, replaced, config.revision, now, events)
    exhausted = {r.job for r, d, _ in decided if isinstance(d, Skip) and d.code == "max-runs"}
    for request, decision, _ in decided:
        job = config.jobs.get(request.job)
        if (
            isinstance(decision, Launch)
            and job
            and job.spec.max_runs
            and states[request.job].launched >= job.spec.max_runs
        ):
            exhausted.add(request.job)
    _update_jobs_after_fire(conn, [(r, d) for r, d, _ in decided if d is not None], config, now, exhausted)
    append(conn, now, events)
    queued = [run_id for run_id in queued if run_id not in cancelled_queued]
    running_replaced = [run_id for run_id in replaced if run_id not in cancelled_queued]
    return FireResult(queued, skipped, duplicates, running_replaced, exhausted, queued_jobs)


def _end_replaced(conn: Connection, run_ids: list[int], revision: str, now: datetime, events: list[Event]) -> set[int]:
    """Cancel replaced runs that had not started yet, each with its `run-cancelled` event (a run
    that ends is on the record, queued or not); return their ids. Running ones are stopped by the
    daemon and recorded when their process has ended."""
    if not run_ids:
        return set()
    waiting = conn.execute(
        select(runs.c.id, runs.c.job, runs.c.run_key, runs.c.attempt).where(
            runs.c.id.in_(run_ids), runs.c.status == "queued"
        )
    ).all()
    if not waiting:
        return set()
    error = "replaced by a newer run (concurrency: replace) before it started"
    ids = [run.id for run in waiting]
    conn.execute(update(runs).where(runs.c.id.in_(ids)).values(status="cancelled", finished_at=now, error=error))
    for run in waiting:
        details = {"run_id": run.id, "attempt": run.attempt, "exit_code": None, "stage": "queued",
                   "zenml_run_id": None, "error": error, "duration_s": None}  # fmt: skip
        events.append(Event("run-cancelled", DAEMON, run.job, run.run_key, revision, details))
        conn.execute(
            update(jobs)
            .where(jobs.c.name == run.job)
            .values(last_outcome="cancelled", last_outcome_at=now, last_run_key=run.run_key)
        )
    return set(ids)


def _insert_ignoring_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert run rows in one statement; return {run_key: id} of those the unique key let in."""
    if not rows:
        return {}
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(runs).on_conflict_do_nothing().returning(runs.c.id, runs.c.run_key)
    return {row.run_key: row.id for row in conn.execute(stmt, rows)}


def _update_jobs_after_fire(
    conn: Connection,
    decided: list[tuple[FireRequest, Launch | Skip]],
    config: Config,
    now: datetime,
    exhausted: set[str],
) -> None:
    """Advance each job's last slot and next fire time (none once max_runs is reached), and its
    dispatch state, in two statements."""
    slots: dict[str, datetime] = {}
    dispatch: dict[str, dict[str, Any]] = {}
    paused_slots: dict[str, datetime] = {}
    for request, decision in decided:
        paused = isinstance(decision, Skip) and decision.code == "paused"
        if request.scheduled_for is not None and request.trigger != "manual":
            timed = paused_slots if paused else slots
            timed[request.job] = max(timed.get(request.job, request.scheduled_for), request.scheduled_for)
        state = dispatch.setdefault(request.job, {"b_name": request.job, "b_skipped": 0, "b_launched": 0})
        if isinstance(decision, Skip):
            state["b_skipped"] += 1
            state["b_result"] = f"skipped-{decision.code}"
        else:
            state["b_launched"] += request.trigger != "manual"
            state["b_result"] = "success"
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
                {
                    "b_name": name,
                    "b_slot": slot_time,
                    "b_next": None if name in exhausted else _next_fire(config, name, max(slot_time, now)),
                }
                for name, slot_time in slots.items()
            ],
        )
    if paused_slots:
        slot = bindparam("b_slot")
        stale = or_(jobs.c.paused_through.is_(None), jobs.c.paused_through < slot)
        conn.execute(
            update(jobs)
            .where(jobs.c.name == bindparam("b_name"))
            .values(paused_through=case((stale, slot), else_=jobs.c.paused_through)),
            [{"b_name": name, "b_slot": slot_time} for name, slot_time in paused_slots.items()],
        )
    if dispatch:
        conn.execute(
            update(jobs)
            .where(jobs.c.name == bindparam("b_name"))
            .values(
                skipped=jobs.c.skipped + bindparam("b_skipped"),
                launched=jobs.c.launched + bindparam("b_launched"),
                last_dispatch=bindparam("b_result"),
                last_dispatch_at=now,
            ),
            list(dispatch.values()),
        )


def _next_fire(config: Config, name: str, after: datetime) -> datetime | None:
    job = config.jobs.get(name)
    return job.trigger.next_after(after) if job is not None else None
