"""Commands about jobs: `list`, `next`, `trigger`, `pause` and `resume`."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from typing import Any

import click
import yaml
from sqlalchemy import select

from scheduler.cli import exit_codes, options
from scheduler.cli.text_table import render_table
from scheduler.config.model import Job
from scheduler.config.settings import Settings
from scheduler.config.watch_spec import templated_keys
from scheduler.errors import ConfigError, NotFoundError
from scheduler.policy.fire_request import FINAL_STATUSES
from scheduler.policy.keys import manual_run_key
from scheduler.store import inbox
from scheduler.store.engine import Store
from scheduler.store.run_records import latest_attempt
from scheduler.store.run_records import run_record as run_dict
from scheduler.store.schema import jobs
from scheduler.timing.clock import utcnow
from scheduler.timing.triggers import fire_times


@click.command("list")
@options.common
@options.json_option
def list_jobs(settings: Settings, as_json: bool) -> None:
    """Jobs, their trigger, next fire time and state."""
    config = options.config_of(settings)
    now = utcnow()
    with options.reading(settings).read() as conn:
        stored = {row.name: row for row in conn.execute(select(jobs))}
    items = []
    for name, job in config.jobs.items():
        row = stored.get(name)
        first = None if row is not None and job.finished(row.launched) else job.first_fire_after(now)
        state = "disabled" if not job.spec.enabled else ("paused" if row is not None and row.paused else "active")
        items.append(
            {
                "job": name,
                "trigger": job.trigger_text,
                "timezone": job.spec.timezone,
                "next_fire": first.astimezone(job.zone).isoformat() if first else None,
                "state": state,
                "last_outcome": row.last_outcome if row is not None else None,
                "last_outcome_at": row.last_outcome_at.isoformat() if row is not None and row.last_outcome_at else None,
                "pipeline": job.spec.pipeline,
            }
        )
    if as_json:
        options.emit(items)
        return
    click.echo(
        render_table(
            ["JOB", "TRIGGER", "TIMEZONE", "NEXT FIRE", "STATE", "LAST OUTCOME"],
            [
                [
                    i["job"],
                    i["trigger"],
                    i["timezone"],
                    i["next_fire"] or _no_time(config.jobs[i["job"]]),
                    i["state"],
                    i["last_outcome"] or "-",
                ]
                for i in items
            ],
        )
    )


@click.command("next")
@click.argument("job_names", nargs=-1)
@click.option("-n", "count", default=5, show_default=True, type=click.IntRange(1, 10000), help="How many fire times.")
@click.option("--after", default=None, help="ISO-8601 instant to count from (default now; naive = UTC).")
@options.common
@options.json_option
def next_fires(settings: Settings, job_names: tuple[str, ...], count: int, after: str | None, as_json: bool) -> None:
    """The next N fire times of the named jobs (all jobs when none are named)."""
    config = options.config_of(settings)
    for name in job_names:
        options.job_or_fail(settings, config, name)
    start = utcnow()
    if after is not None:
        try:
            start = datetime.fromisoformat(after.replace("Z", "+00:00"))
        except ValueError:
            raise click.BadParameter(f"not an ISO-8601 timestamp: {after!r}", param_hint="--after") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=timezone.utc)
    result = {
        name: [
            t.astimezone(config.jobs[name].zone).isoformat()
            for t in fire_times(config.jobs[name].trigger, start, count)
        ]
        for name in (job_names or tuple(config.jobs))
    }
    if as_json:
        options.emit(result)
        return
    for name, times in result.items():
        job = config.jobs[name]
        click.echo(f"{name}  ({job.trigger_text}, {job.spec.timezone})")
        for instant in times or [f"({_no_time(job)})"]:
            click.echo(f"  {instant}")


def _no_time(job: Job) -> str:
    return f"on files in {job.watch_root}" if job.is_watch else "-"


def _parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--param")
        try:
            params[key] = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            params[key] = raw
    return params


@click.command("trigger")
@click.argument("job")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a pipeline parameter (value parsed as YAML: 5, true, text).",
)
@click.option("--wait", is_flag=True, help="Wait for the run to finish; exit 1 unless it succeeded.")
@click.option("--no-check", is_flag=True, help="Skip checking the parameters against the pipeline first.")
@options.common
@options.json_option
def trigger(settings: Settings, job: str, params: tuple[str, ...], wait: bool, no_check: bool, as_json: bool) -> None:
    """Run JOB now, through the running daemon."""
    config = options.config_of(settings)
    options.job_or_fail(settings, config, job)
    overrides = _parse_params(params)
    missing = [key for key in templated_keys(config.jobs[job].spec.parameters) if key not in overrides]
    if missing and config.jobs[job].spec.after is not None:
        raise click.UsageError(
            f"{job} is an after job: its parameters {', '.join(missing)} are filled from the upstream run; "
            f"give them for a manual run, e.g. --param {missing[0]}=VALUE"
        )
    if missing:
        raise click.UsageError(
            f"{job} is a watch job: its parameters {', '.join(missing)} are filled from the files that arrive; "
            f"give them for a manual run, e.g. --param {missing[0]}=data/incoming/batch.csv"
        )
    options.require_daemon(settings, options.reading(settings, note=False))  # none: nothing is created
    store = options.state(settings)
    if overrides and not no_check:
        from scheduler.runs.preflight import check_pipelines

        problems = check_pipelines(
            config, settings.python, overrides={job: overrides}, only=[job], timeout=settings.pipeline_check_timeout
        )
        if problems:
            raise ConfigError(problems)
    now = utcnow()
    run_key = manual_run_key(job, now, uuid.uuid4().hex[:8])
    with store.write() as conn:
        inbox.add_request(conn, job, run_key, overrides, options.source(), now, config.revision)
    if not as_json:
        click.echo(f"requested {run_key}")
    if not wait:
        if as_json:
            options.emit({"run_key": run_key, "status": "requested"})
        return
    run = _wait_for(store, run_key)
    if as_json:
        options.emit(run_dict(run))
    else:
        click.echo(f"{run.run_key}: {run.status}" + (f" ({run.error})" if run.error else ""))
    if run.status != "succeeded":
        raise SystemExit(exit_codes.FAILURE)


def _wait_for(store: Store, run_key: str) -> Any:
    while True:
        with store.read() as conn:
            row = latest_attempt(conn, run_key)
        if row is not None and row.status in FINAL_STATUSES:
            return row
        time.sleep(0.5)


def _set_paused(settings: Settings, job: str, paused: bool) -> None:
    config = options.config_of(settings)
    options.job_or_fail(settings, config, job)
    with options.state(settings).write() as conn:
        if not inbox.set_paused(conn, job, paused, options.source(), utcnow()):
            raise NotFoundError(f"job {job!r} is not in the state database yet; start the daemon once first")
    click.echo(f"{job}: {'paused' if paused else 'resumed'}")


@click.command("pause")
@click.argument("job")
@options.common
def pause(settings: Settings, job: str) -> None:
    """Stop JOB firing on schedule (kept across restarts and reloads)."""
    _set_paused(settings, job, True)


@click.command("resume")
@click.argument("job")
@options.common
def resume(settings: Settings, job: str) -> None:
    """Let a paused JOB fire again."""
    _set_paused(settings, job, False)
