"""`zenml-scheduler history` and `audit`: what ran, and every decision on the record."""

from __future__ import annotations

import json

import click
from sqlalchemy import select

from scheduler.cli import exit_codes, options
from scheduler.cli.text_table import render_table
from scheduler.config.settings import Settings
from scheduler.policy.fire_request import FINAL_STATUSES
from scheduler.store import audit as audit_trail
from scheduler.store.run_records import run_record as run_dict
from scheduler.store.schema import runs


@click.command("history")
@click.option("--job", default=None, help="Only this job.")
@click.option("--status", type=click.Choice(["queued", "running", *FINAL_STATUSES]), default=None)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 100000))
@options.common
@options.json_option
def history(settings: Settings, job: str | None, status: str | None, limit: int, as_json: bool) -> None:
    """Runs, newest first."""
    stmt = select(runs).order_by(runs.c.id.desc()).limit(limit)
    if job:
        stmt = stmt.where(runs.c.job == job)
    if status:
        stmt = stmt.where(runs.c.status == status)
    with options.reading(settings).read() as conn:
        rows = [run_dict(r) for r in conn.execute(stmt)]
    if as_json:
        options.emit(rows)
        return
    click.echo(
        render_table(
            ["RUN KEY", "ATTEMPT", "TRIGGER", "STATUS", "STARTED", "FINISHED", "ZENML RUN", "ERROR"],
            [
                [
                    r["run_key"],
                    r["attempt"],
                    r["trigger"],
                    r["status"],
                    r["started_at"] or "-",
                    r["finished_at"] or "-",
                    r["zenml_run_id"] or "-",
                    (r["error"] or "")[:80],
                ]
                for r in rows
            ],
        )
    )


@click.group("audit", invoke_without_command=True)
@click.option("--job", default=None, help="Only events of this job.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000000))
@options.common
@options.json_option
@click.pass_context
def audit_cmd(ctx: click.Context, settings: Settings, job: str | None, limit: int, as_json: bool) -> None:
    """The audit trail (newest last); `audit verify` checks its hash chain."""
    ctx.obj = settings
    if ctx.invoked_subcommand is not None:
        return
    with options.reading(settings).read() as conn:
        events = audit_trail.query(conn, job, limit)
    if as_json:
        options.emit(events)
        return
    click.echo(
        render_table(
            ["ID", "AT", "EVENT", "JOB", "RUN KEY", "SOURCE", "DETAILS"],
            [
                [
                    e["id"],
                    e["at"],
                    e["event"],
                    e["job"] or "-",
                    e["run_key"] or "-",
                    e["source"],
                    json.dumps(e["details"])[:100],
                ]
                for e in events
            ],
        )
    )


@audit_cmd.command("verify")
@options.common
@options.json_option
def audit_verify(settings: Settings, as_json: bool) -> None:
    """Check that no audit row was edited, inserted or deleted."""
    with options.reading(settings).read() as conn:
        result = audit_trail.verify(conn)
    if as_json:
        options.emit({"ok": result.ok, "rows": result.rows, "bad_id": result.bad_id, "reason": result.reason})
    elif result.ok:
        click.echo(f"audit trail intact: {result.rows} rows")
    else:
        click.echo(f"audit trail broken at row {result.bad_id}: {result.reason}", err=True)
    if not result.ok:
        raise SystemExit(exit_codes.FAILURE)
