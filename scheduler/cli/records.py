"""`zenml-scheduler history` and `audit`: what ran, and every decision on the record."""

from __future__ import annotations

import json
import re

import click
from sqlalchemy import select
from sqlalchemy.exc import DatabaseError

from scheduler.cli import exit_codes, options
from scheduler.cli.text_table import render_table
from scheduler.config.settings import Settings
from scheduler.errors import StateError
from scheduler.policy.fire_request import FINAL_STATUSES
from scheduler.store import audit as audit_trail
from scheduler.store.engine import Store, masked_url
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
    store = options.reading(settings)
    stmt = select(runs).order_by(runs.c.id.desc()).limit(limit)
    if job is not None:
        options.recorded_job_or_fail(settings, store, job)
        stmt = stmt.where(runs.c.job == job)
    if status:
        stmt = stmt.where(runs.c.status == status)
    with store.read() as conn:
        rows = [run_dict(r) for r in conn.execute(stmt)]
    if as_json:
        options.emit(rows)
        return
    click.echo(
        render_table(
            ["RUN KEY", "ATTEMPT", "TRIGGER", "STATUS", "STARTED", "FINISHED", "ZENML RUN", "UPSTREAM", "ERROR"],
            [
                [
                    r["run_key"],
                    r["attempt"],
                    r["trigger"],
                    r["status"],
                    r["started_at"] or "-",
                    r["finished_at"] or "-",
                    r["zenml_run_id"] or "-",
                    r["upstream"] or "-",
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
    store = options.reading(settings)
    if job is not None:
        options.recorded_job_or_fail(settings, store, job)
    with store.read() as conn:
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


_HEAD = re.compile(r"(?:(\d+):|id=(\d+)\s+hash=)([0-9a-f]{64})")


def _external_heads(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[tuple[int, str]]:
    """`--head ID:HASH` (or the log line's own `id=ID hash=HASH`)."""
    heads = []
    for value in values:
        found = _HEAD.fullmatch(value.strip())
        head_id = int(found.group(1) or found.group(2)) if found else 0
        if found is None or head_id < 1:
            raise click.BadParameter(f"{value!r} is not a head: give ID:HASH (the log's `audit head id=ID hash=HASH`)")
        heads.append((head_id, found.group(3)))
    return heads


@audit_cmd.command("verify")
@click.option(
    "--head",
    "heads",
    multiple=True,
    metavar="ID:HASH",
    callback=_external_heads,
    help="A head from the daemon's log (`audit head id=ID hash=HASH`) the chain must still hold; repeatable.",
)
@options.common
@options.json_option
def audit_verify(settings: Settings, heads: list[tuple[int, str]], as_json: bool) -> None:
    """Check every page of the state database the audit trail relies on, and that no audit row
    was edited, inserted or deleted; say which guarantee holds."""
    url = settings.resolved_db_url
    try:
        store = options.reading(settings)
    except DatabaseError as exc:  # not a database at all: it cannot be opened, let alone verified
        raise StateError(f"cannot open state database {masked_url(url)}: {exc.orig}") from None
    try:
        result = _verified(store, heads)
    finally:
        store.close()
    if as_json:
        options.emit(_as_json(result))
    elif result.ok:
        click.echo("\n".join(_report(result)))
    else:
        where = f" at row {result.bad_id}" if result.bad_id is not None else ""
        click.echo(f"audit trail does not verify{where}: {result.reason}", err=True)
    if not result.ok:
        raise SystemExit(exit_codes.FAILURE)


def _verified(store: Store, heads: list[tuple[int, str]]) -> audit_trail.VerifyResult:
    result: audit_trail.VerifyResult | None = None
    try:
        with store.read() as conn:
            result = audit_trail.verify(conn, heads)
    except (DatabaseError, StateError) as exc:
        # The file opened, so a damaged page met while reading the trail (or again when the reading
        # ends, as SQLite may report it) means the trail cannot be verified: exit 1, not 3.
        if result is None or result.ok:
            why = exc.orig if isinstance(exc, DatabaseError) else exc
            return audit_trail.VerifyResult(False, 0, reason=f"the state database cannot be read: {why}")
    return result


def _as_json(result: audit_trail.VerifyResult) -> dict[str, object]:
    return {
        "ok": result.ok,
        "rows": result.rows,
        "bad_id": result.bad_id,
        "reason": result.reason,
        "guarantee": result.guarantee,
        "keyed_from": result.keyed_from,
        "key_id": result.key_id,
        "key_file": result.key_file,
        "head": f"{result.head_id}:{result.head_hash}" if result.head_hash else None,
        "heads_checked": list(result.heads_checked),
        "integrity": result.integrity,
    }


def _report(result: audit_trail.VerifyResult) -> list[str]:
    head = f", head {result.head_id}:{result.head_hash}" if result.head_hash else ""
    lines = [f"audit trail intact: {result.rows} rows{head}"]
    if result.keyed_from is not None:
        older = result.keyed_from - 1
        earlier = {0: "", 1: " (row 1, older, chains into it)"}.get(older, f" (rows 1..{older}, older, chain into it)")
        lines.append(
            f"guarantee: keyed (HMAC) from row {result.keyed_from}{earlier}: an edit, insertion or deletion by "
            f"someone without the key file {result.key_file} (key id {result.key_id}) is detected; a tail cut off "
            "together with its head is detected against a head from the log (--head)"
        )
    else:
        lines.append(
            "guarantee: unkeyed (hash chain only): accidental damage and naive edits are detected, not a rewrite "
            "by someone who can write the database (the chain is keyed from the daemon's next write on)"
        )
    lines += [f"external head {head}: in the chain" for head in result.heads_checked]
    if result.integrity:
        lines.append("SQLite integrity check: ok (every page of the state database was read)")
    return lines
