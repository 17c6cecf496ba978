"""`zenml-scheduler status` and `clear-errors`: each job's dispatch state, and resetting it."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import click
from sqlalchemy import func, select

from scheduler.cli import options
from scheduler.cli.service import leadership
from scheduler.cli.text_table import render_table
from scheduler.config.settings import Settings
from scheduler.daemon.lease import current_holder
from scheduler.errors import NotFoundError
from scheduler.store.engine import Store
from scheduler.store.outcomes import clear_errors
from scheduler.store.schema import jobs, runs
from scheduler.timing.clock import utcnow


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_status(store: Store, names: list[str]) -> list[dict[str, Any]]:
    with store.read() as conn:
        rows = {row.name: row for row in conn.execute(select(jobs).where(jobs.c.name.in_(names)))}
        counts = conn.execute(
            select(runs.c.job, runs.c.status, func.count())
            .where(runs.c.job.in_(names), runs.c.status.in_(("queued", "running")))
            .group_by(runs.c.job, runs.c.status)
        ).all()
    active = {(job, status): n for job, status, n in counts}
    result = []
    for name in names:
        row = rows.get(name)
        result.append({
            "job": name,
            "paused": bool(row and row.paused),
            "paused_reason": row.paused_reason if row else None,
            "last_dispatch": row.last_dispatch if row else None,
            "last_dispatch_at": _iso(row.last_dispatch_at) if row else None,
            "last_outcome": row.last_outcome if row else None,
            "consecutive_failures": row.consecutive_failures if row else 0,
            "error_count": row.error_count if row else 0,
            "first_error_at": _iso(row.first_error_at) if row else None,
            "last_error_at": _iso(row.last_error_at) if row else None,
            "last_error": row.last_error if row else None,
            "launched": row.launched if row else 0,
            "running": active.get((name, "running"), 0),
            "queued": active.get((name, "queued"), 0),
            "next_fire_at": _iso(row.next_fire_at) if row else None,
        })  # fmt: skip
    return result


@click.command("status")
@click.argument("job", required=False)
@options.common
@options.json_option
def status(settings: Settings, job: str | None, as_json: bool) -> None:
    """Dispatch state per job: last result, failures, errors, runs active."""
    store = options.reading(settings)
    if job is not None:
        options.recorded_job_or_fail(settings, store, job)  # also a job removed from the file: its last state
    items = job_status(store, [job] if job else list(options.config_of(settings).jobs))
    if as_json:
        # The output stays a list of jobs (one object with JOB), so each carries the daemon that
        # leads, as `health --json` reports it: added keys break no reader of the older shape.
        daemon = leadership(current_holder(store, utcnow(), timedelta(seconds=settings.lease_ttl)))
        items = [{**item, "daemon": daemon} for item in items]
        click.echo(json.dumps(items if job is None else items[0], indent=2))
        return
    click.echo(render_table(
        ["JOB", "STATE", "LAST DISPATCH", "RUNNING", "QUEUED", "FAILURES", "ERRORS", "LAST ERROR"],
        [[i["job"], "paused" if i["paused"] else "active", i["last_dispatch"] or "-", i["running"], i["queued"],
          i["consecutive_failures"], i["error_count"], (i["last_error"] or "")[:60]] for i in items],
    ))  # fmt: skip
    for item in items:
        if item["paused_reason"]:
            click.echo(f"{item['job']}: {item['paused_reason']}")


@click.command("clear-errors")
@click.argument("job")
@options.common
def clear(settings: Settings, job: str) -> None:
    """Reset JOB's failure count and error state (audited); a paused job stays paused."""
    options.job_or_fail(settings, options.config_of(settings), job)
    with options.state(settings).write() as conn:
        if not clear_errors(conn, job, options.source(), utcnow()):
            raise NotFoundError(f"job {job!r} is not in the state database yet; start the daemon once first")
    click.echo(f"{job}: errors cleared")
