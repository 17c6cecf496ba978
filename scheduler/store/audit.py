"""The append-only, hash-chained audit trail: appending, and reading it back.

Each row stores a hash over its own content and the previous row's hash, and ids are
consecutive, so `audit verify` (`scheduler.store.audit_verify`) can name the first row that was
edited, inserted or deleted. The head (last id and hash) is also kept in `meta`, which catches a
deleted tail. A store given an audit key (`scheduler.store.audit_key`) chains with HMAC from its
first append on, which makes those checks hold against someone who can write the database but
not read the key file (see `scheduler.store.audit_chain`). Appends lock the head row, so writers
in several processes still form one chain.

A recorded head that is garbled, or does not match the last row, does not stop writers (it
would stop the daemon at every start): the writer records an `audit-head-invalid` event with
what it found, logs it, and continues the chain from the last row; `audit verify` keeps
reporting it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, insert, select, update

from scheduler.errors import StateError
from scheduler.store import audit_chain as chain
from scheduler.store.audit_key import AuditKey, Binding, attached
from scheduler.store.audit_verify import VerifyResult, verify
from scheduler.store.engine import after_commit
from scheduler.store.migrations import stored_installation_id
from scheduler.store.schema import audit, meta, scrub

__all__ = ["Event", "VerifyResult", "append", "audit", "meta", "query", "verify"]

log = logging.getLogger(__name__)

HEAD_KEY = chain.HEAD_KEY
GENESIS = chain.GENESIS


@dataclass(frozen=True)
class Event:
    event: str
    source: str
    job: str | None = None
    run_key: str | None = None
    config_revision: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def append(conn: Connection, at: datetime, events: Iterable[Event]) -> int:
    """Append `events` (in order) inside the caller's write transaction; return how many rows
    were written (more than given when the writer also records a keyed start or a bad head)."""
    batch = [_scrubbed(ev) for ev in events]
    if not batch:
        return 0
    recorded = chain.recorded_head(conn, lock=True)
    last_id, prev_hash = chain.last_row(conn)
    key = attached(conn)
    binding, start = (_unkeyed(recorded), None) if key is None else _keying(conn, key, last_id, recorded)
    problems = [p for p in (start, chain.head_problem(recorded, last_id, prev_hash, binding)) if p]
    prefix = [_head_invalid(problem, recorded, last_id, batch[0].source) for problem in problems]
    if key is not None and binding is None:
        binding = _start_keying(conn, key, last_id + len(prefix) + 1)
        prefix.append(Event(chain.KEYED_EVENT, batch[0].source, details={"key_id": binding.key_id}))
    # Hashed as stored and read back: UTC, whole milliseconds (stable through every engine).
    at = at.astimezone(timezone.utc).replace(microsecond=(at.microsecond // 1000) * 1000)
    rows = []
    for ev in [*prefix, *batch]:
        last_id += 1
        details_text = json.dumps(ev.details, sort_keys=True, separators=(",", ":"), default=str)
        keyed = binding is not None and last_id >= binding.keyed_from
        fields = chain.content(
            last_id, at, ev.event, ev.job, ev.run_key, ev.source, ev.config_revision, details_text, prev_hash
        )
        row_hash = chain.row_hash(binding if keyed else None, fields)
        rows.append(
            {
                "id": last_id,
                "at": at,
                "event": ev.event,
                "job": ev.job,
                "run_key": ev.run_key,
                "source": ev.source,
                "config_revision": ev.config_revision,
                "details": details_text,
                "prev_hash": prev_hash,
                "hash": row_hash,
            }
        )
        prev_hash = row_hash
    conn.execute(insert(audit), rows)
    after_commit(conn, lambda: _log(rows, problems))
    keyed = binding is not None and last_id >= binding.keyed_from
    new_head = chain.head_value(last_id, prev_hash, binding if keyed else None)
    if recorded is None:
        conn.execute(insert(meta).values(key=HEAD_KEY, value=new_head))
    else:
        conn.execute(update(meta).where(meta.c.key == HEAD_KEY).values(value=new_head))
    return len(rows)


def _unkeyed(recorded: str | None) -> None:
    """A writer without a key may only extend a chain without one."""
    head = chain.parse_head(recorded) if recorded is not None else None
    if head is not None and head.mac is not None:
        raise StateError("the audit trail is keyed (HMAC), but this process was given no audit key file")


def _keying(conn: Connection, key: AuditKey, last_id: int, recorded: str | None) -> tuple[Binding | None, str | None]:
    """The binding this chain is keyed with (None: not keyed yet, start now), and what is wrong
    with the keyed start the key file names, if anything (checked once per process)."""
    this = stored_installation_id(conn) if not key.installation_checked else None
    if key.binding is None and not key.installation_checked:
        key.settle_path(this)
    binding = key.binding or key.read()
    if binding is None:
        # A pending key whose first row committed: its writer died (or is about to promote it).
        binding = key.recover_pending(lambda candidate: chain.start_problem(conn, candidate) is None)
    if binding is None:
        head = chain.parse_head(recorded) if recorded is not None else None
        if head is not None and head.mac is not None:
            raise StateError(
                f"the audit trail is keyed (HMAC), but its key file {key.path} does not exist; restore it "
                "from a backup (a new key cannot check the rows made with the old one), or point "
                "ZENML_SCHEDULER_AUDIT_KEY_FILE at it"
            )
        return None, None
    if not key.installation_checked:
        if binding.installation_id != this and last_id == 0 and recorded is None and this is not None:
            # A new, empty state database where another stood (dropped and recreated, or moved away
            # to start over): it gets a key file of its own; the other's stays as it is.
            configured, key.path = key.path, key.own_path(this)
            log.warning("audit key file %s belongs to state database %s; this new one (%s) gets its own, %s",
                        configured, binding.installation_id, this, key.path)  # fmt: skip
            key.installation_checked = True
            return None, None
        if binding.installation_id != this:
            raise StateError(
                f"the audit key file {key.path} belongs to another state database (installation "
                f"{binding.installation_id}, this one is {this}); point ZENML_SCHEDULER_AUDIT_KEY_FILE at "
                "this database's key file, or move that file away for this database to get a new one"
            )
        key.installation_checked = True
    key.binding = binding
    if key.start_checked:
        return binding, None
    problem = chain.start_problem(conn, binding) if last_id >= binding.keyed_from else (
        f"the key file says rows from {binding.keyed_from} on are keyed, but the chain ends at row "
        f"{last_id}: the keyed rows were deleted (or the table emptied)"
    )  # fmt: skip
    if problem is None:
        key.start_checked = True
    else:  # reported once it is on the record; after a rollback the next append reports it
        after_commit(conn, lambda: setattr(key, "start_checked", True))
    return binding, problem


def _start_keying(conn: Connection, key: AuditKey, keyed_from: int) -> Binding:
    """A new key for rows from `keyed_from` on; its file appears (and this process keeps it)
    once this transaction commits. After a rollback the next append starts again."""
    this = stored_installation_id(conn)
    if this is None:
        raise StateError("the state database has lost its installation id (meta was edited); the audit key needs it")
    binding, pending = key.make_pending(this, keyed_from)

    def committed() -> None:
        key.promote(pending)
        key.binding, key.start_checked, key.installation_checked = binding, True, True

    after_commit(conn, committed)
    return binding


def _head_invalid(problem: str, recorded: str | None, last_id: int, source: str) -> Event:
    details: dict[str, Any] = {"reason": problem, "continued_from": last_id}
    if recorded is not None:
        details["recorded"] = chain.shown(recorded)[1:-1]
    return Event(chain.HEAD_INVALID_EVENT, source, details=details)


def _scrubbed(event: Event) -> Event:
    """The event as its columns store it, so that the hash covers exactly what is stored (a job
    name from a URL path may hold a NUL byte)."""

    def text(value: str | None) -> str | None:
        return scrub(value) if value is not None else None

    return replace(
        event, event=scrub(event.event), source=scrub(event.source), job=text(event.job),
        run_key=text(event.run_key), config_revision=text(event.config_revision),
    )  # fmt: skip


def _log(rows: list[dict[str, Any]], problems: list[str]) -> None:
    """The structured-log twin of each committed event (logged only once it is durable)."""
    for problem in problems:
        log.error("audit trail: %s; the chain goes on from its last row (see `zenml-scheduler audit verify`)", problem)
    for row in rows:
        log.info(row["event"], extra={"audit": {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}})


def query(conn: Connection, job: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    """The newest `limit` events (optionally of one job), oldest first."""
    stmt = select(audit).order_by(audit.c.id.desc()).limit(limit)
    if job is not None:
        stmt = stmt.where(audit.c.job == job)
    rows = conn.execute(stmt).all()
    return [
        {
            "id": r.id,
            "at": r.at.isoformat(),
            "event": r.event,
            "job": r.job,
            "run_key": r.run_key,
            "source": r.source,
            "config_revision": r.config_revision,
            "details": json.loads(r.details),
        }
        for r in reversed(rows)
    ]
