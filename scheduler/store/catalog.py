"""Apply a loaded config to the stored job table, and work out what was missed while down."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from scheduler import tuning
from scheduler.config.model import Config, Job
from scheduler.errors import Problem
from scheduler.policy.catch_up import paused_while_down, plan_catch_up
from scheduler.policy.decide import policy_of
from scheduler.policy.fire_request import FireRequest
from scheduler.policy.keys import slot_run_key, utc_iso
from scheduler.policy.reload_diff import Diff, diff_jobs, trigger_changed
from scheduler.store.audit import Event, append
from scheduler.store.schema import jobs


def stored_specs(conn: Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(jobs.c.name, jobs.c.spec_json).where(jobs.c.removed_at.is_(None)))
    return {row.name: json.loads(row.spec_json) for row in rows}


def active_jobs(conn: Connection) -> list[str]:
    """The jobs of the config last applied (not removed), by name."""
    rows = conn.execute(select(jobs.c.name).where(jobs.c.removed_at.is_(None)).order_by(jobs.c.name))
    return [row.name for row in rows]


def apply_config(conn: Connection, config: Config, now: datetime, source: str) -> Diff:
    """Write the diff between `config` and the job table, audited; unchanged jobs keep their state."""
    diff = diff_jobs({name: job.spec_dict() for name, job in config.jobs.items()}, stored_specs(conn))
    known = {row.name for row in conn.execute(select(jobs.c.name))}
    events = [
        Event(
            "config-loaded",
            source,
            config_revision=config.revision,
            details={
                "path": str(config.path),
                "jobs": len(config.jobs),
                "added": diff.added,
                "changed": [c.name for c in diff.changed],
                "removed": diff.removed,
            },
        )
    ]
    added = [config.jobs[name] for name in diff.added]
    revived = [job for job in added if job.name in known]  # re-added after removal: keeps counters and pause
    fresh = [job for job in added if job.name not in known]
    if fresh:
        conn.execute(
            insert(jobs),
            [
                {"name": job.name, "created_at": now, "paused": False, "runs_total": 0, "succeeded": 0,
                 "failed": 0, "skipped": 0, **_spec_columns(job, now), "removed_at": None, "last_slot": now}
                for job in fresh
            ],
        )  # fmt: skip
    if revived:
        _update_by_name(conn, [{**_spec_columns(job, now), "removed_at": None, "last_slot": now, "b_name": job.name}
                               for job in revived])  # fmt: skip
    events.extend(
        Event("job-added", source, job.name, config_revision=config.revision,
              details={"trigger": job.trigger_text, "spec": job.spec_dict()})
        for job in added
    )  # fmt: skip
    for regrid in (True, False):  # a changed trigger is a new slot grid: nothing before now is owed under it
        group = [c for c in diff.changed if trigger_changed(c) is regrid]
        extra = {"last_slot": now} if regrid else {}
        _update_by_name(conn, [{**_spec_columns(config.jobs[c.name], now), **extra, "b_name": c.name} for c in group])
    events.extend(
        Event("job-changed", source, c.name, config_revision=config.revision,
              details={"fields": {k: {"old": old, "new": new} for k, (old, new) in c.fields.items()}})
        for c in diff.changed
    )  # fmt: skip
    _update_by_name(
        conn, [{"removed_at": now, "next_fire_at": None, "updated_at": now, "b_name": n} for n in diff.removed]
    )
    events.extend(Event("job-removed", source, name, config_revision=config.revision) for name in diff.removed)
    append(conn, now, events)
    return diff


def _spec_columns(job: Job, now: datetime) -> dict[str, Any]:
    return {
        "spec_json": job.spec_json,
        "digest": job.digest,
        "trigger": job.trigger_text[:200],  # the column's width; a watch folder's path can be longer
        "timezone": job.spec.timezone,
        "enabled": job.spec.enabled,
        "updated_at": now,
    }


def _update_by_name(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """One executemany UPDATE of job rows by name; every row must carry the same columns."""
    if not rows:
        return
    columns = [key for key in rows[0] if key != "b_name"]
    stmt = update(jobs).where(jobs.c.name == bindparam("b_name")).values({c: bindparam(f"b_{c}") for c in columns})
    conn.execute(stmt, [{"b_name": row["b_name"], **{f"b_{c}": row[c] for c in columns}} for row in rows])


CATCHUP_REASONS = {
    "coalesced": "missed; catchup: latest runs only the newest missed slot",
    "catchup-none": "missed; catchup: none runs no missed slot",
    "catchup-limit": "missed; catchup: all runs at most max_catchup missed slots, the newest",
}


def catch_up_requests(
    conn: Connection,
    config: Config,
    now: datetime,
    grace: timedelta,
    only: str | None = None,
) -> list[FireRequest]:
    """Slots missed while no daemon ran (or, with `only`, while that job was paused), per the
    job's catchup policy. Every missed slot is audited; each job's watermark moves to now.
    Paused jobs keep their watermark, so their missed slots are caught up on resume; those after
    the last slot audited while the job was paused are audited now, in one event."""
    stmt = select(jobs.c.name, jobs.c.last_slot, jobs.c.paused, jobs.c.paused_through).where(
        jobs.c.removed_at.is_(None)
    )
    if only is not None:
        stmt = stmt.where(jobs.c.name == only, jobs.c.paused.is_(False))
    requests: list[FireRequest] = []
    events: list[Event] = []
    caught_up: list[str] = []
    summarised: list[str] = []
    for row in conn.execute(stmt):
        job = config.jobs.get(row.name)
        if job is None or row.last_slot is None or not job.spec.enabled or row.last_slot >= now:
            continue
        if row.paused:
            audited = _paused_while_down(job, max(row.last_slot, row.paused_through or row.last_slot), now,
                                         config.revision)  # fmt: skip
            events += audited
            summarised += [row.name] if audited else []
            continue
        caught_up.append(row.name)
        policy = policy_of(job, grace)
        plan = plan_catch_up(job, row.last_slot, now, policy)
        base = {"job": row.name, "config_revision": config.revision}
        if plan.expired_count:
            reason = f"{plan.expired_count} slot(s) missed, past the {policy.grace.total_seconds():.0f}s grace window"
            first = utc_iso(plan.first_expired) if plan.first_expired else None
            until = utc_iso(plan.expired_until) if plan.expired_until else None
            details = {"code": "missed", "count": plan.expired_count, "first": first, "until": until, "reason": reason}
            events.append(Event("skip", "daemon", **base, details=details))
        for slot, code in plan.skipped[: tuning.CATCH_UP_AUDIT_EACH]:
            details = {"code": code, "scheduled_for": slot.isoformat(), "reason": CATCHUP_REASONS[code]}
            events.append(Event("skip", "daemon", run_key=slot_run_key(row.name, slot), **base, details=details))
        if len(plan.skipped) > tuning.CATCH_UP_AUDIT_EACH:
            rest = plan.skipped[tuning.CATCH_UP_AUDIT_EACH :]
            code = rest[0][1]
            details = {"code": code, "count": len(rest), "first": utc_iso(rest[0][0]),
                       "last": utc_iso(rest[-1][0]), "reason": CATCHUP_REASONS[code]}  # fmt: skip
            events.append(Event("skip", "daemon", **base, details=details))
        requests.extend(FireRequest(row.name, "catchup", slot_run_key(row.name, s), "daemon", s) for s in plan.fire)
    if caught_up:
        conn.execute(update(jobs).where(jobs.c.name.in_(caught_up), jobs.c.last_slot < now).values(last_slot=now))
    if summarised:
        conn.execute(update(jobs).where(jobs.c.name.in_(summarised)).values(paused_through=now))
    append(conn, now, events)
    return requests


def _paused_while_down(job: Job, since: datetime, now: datetime, revision: str) -> list[Event]:
    count, first = paused_while_down(job, since, now)
    if not count:
        return []
    reason = f"{count} slot(s) came due while no daemon ran and the job was paused; resume catches them up"
    details = {"code": "paused", "count": count, "first": utc_iso(first) if first else None, "until": utc_iso(now),
               "reason": reason}  # fmt: skip
    return [Event("skip", "daemon", job.name, config_revision=revision, details=details)]


def record_rejected_config(conn: Connection, path: Path, problems: list[Problem], now: datetime, source: str) -> None:
    """Audit a config that was refused, with every problem, so `audit` shows why nothing changed."""
    try:
        revision: str | None = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        revision = None
    details = {"path": str(path), "problems": [str(p) for p in problems]}
    append(conn, now, [Event("config-rejected", source, config_revision=revision, details=details)])


def refresh_next_fire(conn: Connection, next_fires: dict[str, datetime | None]) -> None:
    """Store each job's next fire time (None: disabled, or never fires again)."""
    _update_by_name(conn, [{"next_fire_at": when, "b_name": name} for name, when in next_fires.items()])
