"""`zenml-scheduler plan` and `reload`: preview a config change, and ask the daemon to apply one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from scheduler.cli import exit_codes, options
from scheduler.config.model import Config, Job
from scheduler.config.settings import Settings
from scheduler.errors import Problem
from scheduler.policy.catch_up import plan_catch_up
from scheduler.policy.decide import policy_of
from scheduler.policy.reload_diff import Diff, diff_jobs, emptying_problem
from scheduler.store import inbox
from scheduler.store.catalog import stored_specs
from scheduler.store.schema import jobs
from scheduler.timing.clock import utcnow
from scheduler.timing.triggers import dst_note, fire_times


def upcoming(job: Job, now: datetime, count: int = 3) -> list[dict[str, Any]]:
    """The next fire times in the job's timezone, each with its DST note if it has one."""
    return [
        {"at": t.astimezone(job.zone).isoformat(), "dst": dst_note(job.trigger, t)}
        for t in fire_times(job.trigger, now, count)
    ]


def build_plan(config: Config, stored: dict[str, dict[str, Any]], rows: dict[str, Any], now: datetime,
               grace: timedelta) -> dict[str, Any]:  # fmt: skip
    """What applying `config` would do to the stored jobs, as data."""
    diff: Diff = diff_jobs({name: job.spec_dict() for name, job in config.jobs.items()}, stored)
    touched = diff.added + [c.name for c in diff.changed]
    catch_up = {}
    for name in diff.unchanged + [c.name for c in diff.changed]:
        row, job = rows.get(name), config.jobs[name]
        if row is None or row.last_slot is None or row.paused or not job.spec.enabled:
            continue
        plan = plan_catch_up(job, row.last_slot, now, policy_of(job, grace))
        if plan.fire or plan.skipped or plan.expired_count:
            catch_up[name] = {"fire": [t.isoformat() for t in plan.fire], "skipped": len(plan.skipped),
                              "expired": plan.expired_count}  # fmt: skip
    return {
        "revision": config.revision,
        "added": diff.added,
        "changed": [
            {"job": c.name, "fields": {k: {"old": o, "new": n} for k, (o, n) in c.fields.items()}} for c in diff.changed
        ],
        "removed": diff.removed,
        "unchanged": len(diff.unchanged),
        "next": {name: upcoming(config.jobs[name], now) for name in touched if config.jobs[name].spec.enabled},
        "catch_up_at_next_start": catch_up,
        "trigger_graph": trigger_graph(config),
    }


def trigger_graph(config: Config) -> list[dict[str, Any]]:
    """The edges of `after:` triggers, upstream first: which job or pipeline starts which job, on what."""
    edges = []
    for name, job in sorted(config.jobs.items()):
        after = job.spec.after
        if after is None:
            continue
        edges.append({
            "upstream": {"job": after.job} if after.job is not None else {"pipeline": after.pipeline},
            "job": name, "status": list(after.statuses), "when": after.when, "debounce": after.debounce,
            "enabled": job.spec.enabled,
        })  # fmt: skip
    return edges


def render_graph(edges: list[dict[str, Any]]) -> list[str]:
    lines = ["Trigger graph (after:):"] if edges else []
    for edge in edges:
        upstream = edge["upstream"].get("job") or f"pipeline {edge['upstream']['pipeline']} (any run)"
        terms = ["|".join(edge["status"])]
        terms += [f"when {edge['when']}"] if edge["when"] else []
        terms += [f"debounce {edge['debounce']}"] if edge["debounce"] else []
        terms += [] if edge["enabled"] else ["disabled"]
        lines.append(f"  {upstream} -> {edge['job']}  [{'; '.join(terms)}]")
    return lines


def emptying_warning(config: Config, active: list[str], allow_empty: bool) -> Problem | None:
    """A warning when `config` has no jobs and applying it would remove every active one: what a
    daemon rejects (a bare `jobs:`), or what it would do (`jobs: {}`, or allow_empty)."""
    if config.jobs or not active:
        return None
    refused = emptying_problem(config, active, allow_empty)
    if refused is not None:
        message = f"{refused.message}; a running daemon rejects this file and keeps its jobs"
    else:
        message = f"applying this file removes every job: all {len(active)} active job(s)"
    return config.source.problem(("jobs",), message, key=True, severity="warning")


def render_plan(plan: dict[str, Any]) -> str:
    lines = []
    for name in plan["added"]:
        lines.append(f"+ {name}")
        lines += _next_lines(plan["next"].get(name, []))
    for change in plan["changed"]:
        lines.append(f"~ {change['job']}")
        lines += [
            f"    {field}: {json.dumps(v['old'])} -> {json.dumps(v['new'])}" for field, v in change["fields"].items()
        ]
        lines += _next_lines(plan["next"].get(change["job"], []))
    lines += [f"- {name}" for name in plan["removed"]]
    for name, what in plan["catch_up_at_next_start"].items():
        lines.append(f"  {name}: a daemon starting now would catch up {what['fire'] or 'nothing'}, "
                     f"skip {what['skipped']} missed slot(s) and {what['expired']} past the grace window")  # fmt: skip
    lines += render_graph(plan["trigger_graph"])
    counts = (len(plan["added"]), len(plan["changed"]), len(plan["removed"]))
    lines.append("No changes." if not any(counts) else "Plan: {} to add, {} to change, {} to remove.".format(*counts))
    return "\n".join(lines)


def _next_lines(times: list[dict[str, Any]]) -> list[str]:
    return [f"    next: {t['at']}" + (f"  [{t['dst']}]" if t["dst"] else "") for t in times]


@click.command("plan")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
@click.option("--no-pipelines", is_flag=True, help="Check syntax and schema only; do not import pipelines.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 5 when there are changes, 0 when none (like terraform).")
@options.json_option
@options.common
def plan(settings: Settings, file: str | None, no_pipelines: bool, detailed_exitcode: bool, as_json: bool) -> None:
    """What a reload with FILE would change; exit 2 if FILE is invalid."""
    from scheduler.cli.run import load_checked

    config = load_checked(settings, Path(file) if file else None, check=not no_pipelines)
    with options.reading(settings).read() as conn:
        stored = stored_specs(conn)
        rows = {row.name: row for row in conn.execute(select(jobs).where(jobs.c.removed_at.is_(None)))}
    result = build_plan(config, stored, rows, utcnow(), timedelta(seconds=settings.misfire_grace))
    warning = emptying_warning(config, sorted(stored), settings.allow_empty)
    result["warnings"] = [str(warning)] if warning is not None else []
    if warning is not None:
        click.echo(str(warning), err=True)
    click.echo(json.dumps(result, indent=2) if as_json else render_plan(result))
    if detailed_exitcode and (result["added"] or result["changed"] or result["removed"]):
        raise SystemExit(exit_codes.CHANGES_PENDING)


@click.command("reload")
@options.common
def reload(settings: Settings) -> None:
    """Ask the running daemon to reload its config (same as SIGHUP); it validates first."""
    options.require_daemon(settings, options.reading(settings, note=False))  # none: nothing is created
    store = options.state(settings)
    now = utcnow()
    with store.write() as conn:
        inbox.request_reload(conn, options.source(), now)
    click.echo("reload requested; `zenml-scheduler audit` shows whether it was applied or rejected")
