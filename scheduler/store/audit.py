"""The append-only, hash-chained audit trail.

Each row stores sha256 over its own content and the previous row's hash, and ids are
consecutive, so `verify` can name the first row that was edited, inserted or deleted. The head
(last id and hash) is also kept in `meta`, which catches a deleted tail. Appends lock the head
row, so writers in several processes still form one chain.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Connection, insert, select, update

from scheduler.store.engine import after_commit
from scheduler.store.schema import audit, meta, scrub

log = logging.getLogger(__name__)

HEAD_KEY = "audit_head"
GENESIS = "0" * 64


@dataclass(frozen=True)
class Event:
    event: str
    source: str
    job: str | None = None
    run_key: str | None = None
    config_revision: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _digest(row_id: int, at: datetime, event: Event, details_text: str, prev_hash: str) -> str:
    content = [
        row_id,
        at.isoformat(),
        event.event,
        event.job,
        event.run_key,
        event.source,
        event.config_revision,
        details_text,
        prev_hash,
    ]
    return hashlib.sha256(json.dumps(content, separators=(",", ":")).encode()).hexdigest()


def append(conn: Connection, at: datetime, events: Iterable[Event]) -> int:
    """Append `events` (in order) inside the caller's write transaction; return how many."""
    batch = list(events)
    if not batch:
        return 0
    head = conn.execute(select(meta.c.value).where(meta.c.key == HEAD_KEY).with_for_update()).scalar_one_or_none()
    last_id, prev_hash = (0, GENESIS) if head is None else _parse_head(head)
    rows = []
    # Hashed as stored and read back: UTC, whole milliseconds (stable through every engine).
    at = at.astimezone(timezone.utc).replace(microsecond=(at.microsecond // 1000) * 1000)
    for ev in map(_scrubbed, batch):
        last_id += 1
        details_text = json.dumps(ev.details, sort_keys=True, separators=(",", ":"), default=str)
        row_hash = _digest(last_id, at, ev, details_text, prev_hash)
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
    after_commit(conn, lambda: _log(rows))
    new_head = f"{last_id}:{prev_hash}"
    if head is None:
        conn.execute(insert(meta).values(key=HEAD_KEY, value=new_head))
    else:
        conn.execute(update(meta).where(meta.c.key == HEAD_KEY).values(value=new_head))
    return len(rows)


def _scrubbed(event: Event) -> Event:
    """The event as its columns store it, so that the hash covers exactly what is stored (a job
    name from a URL path may hold a NUL byte)."""

    def text(value: str | None) -> str | None:
        return scrub(value) if value is not None else None

    return replace(
        event, event=scrub(event.event), source=scrub(event.source), job=text(event.job),
        run_key=text(event.run_key), config_revision=text(event.config_revision),
    )  # fmt: skip


def _log(rows: list[dict[str, Any]]) -> None:
    """The structured-log twin of each committed event (logged only once it is durable)."""
    for row in rows:
        log.info(row["event"], extra={"audit": {k: v for k, v in row.items() if k not in ("prev_hash", "hash")}})


def _parse_head(value: str) -> tuple[int, str]:
    last_id, _, last_hash = value.partition(":")
    return int(last_id), last_hash


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    bad_id: int | None = None
    reason: str = ""


def verify(conn: Connection) -> VerifyResult:
    """Walk the chain from the first row; report the first row that does not fit."""
    expected_id, prev_hash, count = 1, GENESIS, 0
    for row in _iter_rows(conn):
        if row.id != expected_id:
            missing = row.id > expected_id
            what = f"rows {expected_id}..{row.id - 1} are missing" if missing else "row id out of sequence"
            return VerifyResult(False, count, row.id, what)
        if row.prev_hash != prev_hash:
            return VerifyResult(
                False, count, row.id, "does not chain to the previous row (a row was deleted or inserted)"
            )
        ev = Event(row.event, row.source, row.job, row.run_key, row.config_revision)
        if _digest(row.id, row.at, ev, row.details, row.prev_hash) != row.hash:
            return VerifyResult(False, count, row.id, "content does not match its hash (the row was edited)")
        prev_hash, expected_id, count = row.hash, expected_id + 1, count + 1
    head = conn.execute(select(meta.c.value).where(meta.c.key == HEAD_KEY)).scalar_one_or_none()
    head_id, head_hash = (0, GENESIS) if head is None else _parse_head(head)
    if (head_id, head_hash) != (expected_id - 1, prev_hash):
        return VerifyResult(
            False,
            count,
            head_id,
            f"the chain ends at row {expected_id - 1} but the recorded head is row {head_id} "
            "(rows were deleted from the end)",
        )
    return VerifyResult(True, count)


def _iter_rows(conn: Connection, chunk: int = 5000) -> Iterator[Any]:
    last = 0
    while True:
        batch = conn.execute(select(audit).where(audit.c.id > last).order_by(audit.c.id).limit(chunk)).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].id


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
