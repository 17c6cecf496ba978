"""Apply a loaded config to the stored job table, and work out what was missed while down."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update

from scheduler.audit import Event, append
from scheduler.config import Config
from scheduler.errors import Problem
from scheduler.planner import FireRequest, plan_catch_up, slot_run_key, utc_iso
from scheduler.reconcile import Diff, diff_jobs, trigger_changed
from scheduler.store import jobs


def stored_specs(conn: Connection) -> dict[str, dict[str, Any]]:
    rows = conn.execute(select(jobs.c.name, jobs.c.spec_json).where(jobs.c.removed_at.is_(None)))
    return {row.name: json.loads(row.spec_json) for row in rows}


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
    for name in diff.added:
        job = config.jobs[name]
        values = {
            "spec_json": json.dumps(job.spec_dict()),
            "digest": job.digest,
            "trigger": job.trigger_text,
            "timezone": job.spec.timezone,
            "enabled": job.spec.enabled,
            "updated_at": now,
            "removed_at": None,
            "last_slot": now,
            "next_fire_at": job.trigger.next_after(now),
        }
        if name in known:  # re-added after removal: keep its counters and pause state
            conn.execute(update(jobs).where(jobs.c.name == name).values(**values))
        else:
            conn.execute(
                insert(jobs).values(
                    name=name, created_at=now, paused=False, runs_total=0, succeeded=0, failed=0, skipped=0, **values
                )
            )
        events.append(
            Event(
                "job-added",
                source,
                name,
                config_revision=config.revision,
                details={"trigger": job.trigger_text, "spec": job.spec_dict()},
            )
        )
    for change in diff.changed:
        job = config.jobs[change.name]
        values = {
            "spec_json": json.dumps(job.spec_dict()),
            "digest": job.digest,
            "trigger": job.trigger_text,
            "timezone": job.spec.timezone,
            "enabled": job.spec.enabled,
            "updated_at": now,
        }
        if trigger_changed(change):  # a new slot grid: nothing before now is owed under it
            values.update(last_slot=now, next_fire_at=job.trigger.next_after(now))
        conn.execute(update(jobs).where(jobs.c.name == change.name).values(**values))
        events.append(
            Event(
                "job-changed",
                source,
                change.name,
                config_revision=config.revision,
                details={"fields": {k: {"old": old, "new": new} for k, (old, new) in change.fields.items()}},
            )
        )
    for name in diff.removed:
        conn.execute(update(jobs).where(jobs.c.name == name).values(removed_at=now, next_fire_at=None, updated_at=now))
        events.append(Event("job-removed", source, name, config_revision=config.revision))
    append(conn, now, events)
    return diff


def catch_up_requests(conn: Connection, config: Config, now: datetime, grace: timedelta) -> list[FireRequest]:
    """Slots missed while no daemon ran: one request per job for the newest slot inside the grace
    window; older slots are audited as coalesced or missed, and each job's watermark moves to now."""
    rows = conn.execute(select(jobs.c.name, jobs.c.last_slot, jobs.c.paused).where(jobs.c.removed_at.is_(None))).all()
    requests: list[FireRequest] = []
    events: list[Event] = []
    for row in rows:
        job = config.jobs.get(row.name)
        if job is None or row.last_slot is None or not job.spec.enabled or row.last_slot >= now:
            continue
        plan = plan_catch_up(job, row.last_slot, now, grace)
        base = {"job": row.name, "config_revision": config.revision}
        if plan.expired_count:
            events.append(
                Event(
                    "skip",
                    "daemon",
                    **base,
                    details={
                        "code": "missed",
                        "count": plan.expired_count,
                        "first": utc_iso(plan.first_expired) if plan.first_expired else None,
                        "reason": f"{plan.expired_count} slot(s) missed while down, "
                        f"past the {grace.total_seconds():.0f}s grace window",
                    },
                )
            )
        for slot in plan.coalesced:
            events.append(
                Event(
                    "skip",
                    "daemon",
                    run_key=slot_run_key(row.name, slot),
                    **base,
                    details={
                        "code": "coalesced",
                        "scheduled_for": slot.isoformat(),
                        "reason": "missed while down; only the newest missed slot is caught up",
                    },
                )
            )
        if plan.fire is not None:
            requests.append(FireRequest(row.name, "catchup", slot_run_key(row.name, plan.fire), "daemon", plan.fire))
        conn.execute(update(jobs).where(jobs.c.name == row.name).values(last_slot=now))
    append(conn, now, events)
    return requests


def record_rejected_config(conn: Connection, path: Path, problems: list[Problem], now: datetime, source: str) -> None:
    """Audit a config that was refused, with every problem, so `audit` shows why nothing changed."""
    try:
        revision: str | None = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    except OSError:
        revision = None
    details = {"path": str(path), "problems": [str(p) for p in problems]}
    append(conn, now, [Event("config-rejected", source, config_revision=revision, details=details)])


def refresh_next_fire(conn: Connection, config: Config, now: datetime) -> None:
    for name, job in config.jobs.items():
        conn.execute(
            update(jobs)
            .where(jobs.c.name == name)
            .values(next_fire_at=job.trigger.next_after(now) if job.spec.enabled else None)
        )
