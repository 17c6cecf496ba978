"""The audit chain's arithmetic, shared by the writer (`scheduler.store.audit`) and the checker
(`scheduler.store.audit_verify`): what a row's hash covers, how the head is recorded, and what
makes a recorded head or a keyed start wrong.

A row's hash covers its content and the previous row's hash: sha256 on a chain without a key
(older rows, or a process given no key), HMAC-SHA256 with the audit key from the row the key
file names on. The head is kept in `meta` as `ID:HASH`, and on a keyed chain as
`ID:HASH:MAC`, where MAC authenticates that pair: without the key nobody can move the head
back to an earlier row after deleting the rows behind it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from scheduler.store.audit_key import Binding
from scheduler.store.schema import audit, meta, scrub

HEAD_KEY = "audit_head"
GENESIS = "0" * 64
KEYED_EVENT = "audit-keyed"  # the first row keyed with a key file: its id is the file's keyed_from
HEAD_INVALID_EVENT = "audit-head-invalid"  # a writer found the recorded head wrong and went on from the last row
_SHOWN = 120  # characters of a bad recorded head quoted in messages and events


def content(
    row_id: int,
    at: datetime,
    event: str,
    job: str | None,
    run_key: str | None,
    source: str,
    config_revision: str | None,
    details_text: str,
    prev_hash: str,
) -> list[Any]:
    return [row_id, at.isoformat(), event, job, run_key, source, config_revision, details_text, prev_hash]


def row_hash(binding: Binding | None, fields: list[Any]) -> str:
    if binding is not None:
        return binding.mac(fields)
    return hashlib.sha256(json.dumps(fields, separators=(",", ":")).encode()).hexdigest()


def hash_of(row: Any, binding: Binding | None) -> str:
    """What the stored row's hash should be."""
    fields = content(
        row.id, row.at, row.event, row.job, row.run_key, row.source, row.config_revision, row.details, row.prev_hash
    )
    return row_hash(binding, fields)


def head_value(row_id: int, hash_: str, binding: Binding | None) -> str:
    return f"{row_id}:{hash_}" if binding is None else f"{row_id}:{hash_}:{binding.head_mac(row_id, hash_)}"


@dataclass(frozen=True)
class Head:
    """A recorded head, parsed; `mac` only on a keyed chain."""

    id: int
    hash: str
    mac: str | None = None


def parse_head(value: str) -> Head | None:
    """The recorded head, or None when it is not one (garbled)."""
    parts = value.split(":")
    if len(parts) not in (2, 3) or not parts[0].isdigit() or not all(_is_hash(p) for p in parts[1:]):
        return None
    return Head(int(parts[0]), parts[1], parts[2] if len(parts) == 3 else None)


def _is_hash(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def recorded_head(conn: Connection, lock: bool = False) -> str | None:
    query = select(meta.c.value).where(meta.c.key == HEAD_KEY)
    return conn.execute(query.with_for_update() if lock else query).scalar_one_or_none()


def last_row(conn: Connection) -> tuple[int, str]:
    """The id and hash of the chain's last row; (0, GENESIS) for an empty chain."""
    row = conn.execute(select(audit.c.id, audit.c.hash).order_by(audit.c.id.desc()).limit(1)).first()
    return (0, GENESIS) if row is None else (row.id, row.hash)


def shown(value: str) -> str:
    """A bad recorded value as messages quote it: scrubbed and cut short."""
    text = scrub(value)
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "...")


def head_problem(value: str | None, last_id: int, last_hash: str, binding: Binding | None) -> str | None:
    """What is wrong with the recorded head `value` of a chain ending at (last_id, last_hash),
    or None. From the keyed start on the head must carry its MAC."""
    if value is None:
        return None if last_id == 0 else f"no head is recorded, but the chain has rows up to {last_id}"
    head = parse_head(value)
    if head is None:
        return f"the recorded head {shown(value)} is not valid (expected ID:HASH)"
    keyed = binding is not None and last_id >= binding.keyed_from
    if keyed and (head.mac is None or head.mac != binding.head_mac(head.id, head.hash)):  # type: ignore[union-attr]
        return f"the recorded head (row {head.id}) is not signed with the audit key: it was moved or written without it"
    if (head.id, head.hash) != (last_id, last_hash):
        return f"the chain ends at row {last_id} but the recorded head is row {head.id} " + (
            "(rows were deleted from the end)" if head.id > last_id else "(it does not match the last row)"
        )
    return None


def start_problem(conn: Connection, binding: Binding) -> str | None:
    """Why the row the key file names is not the keyed start it should be, or None. The key file
    exists only once that row has committed, so its absence means the chain was cut."""
    row = conn.execute(select(audit).where(audit.c.id == binding.keyed_from)).first()
    if row is None:
        return (
            f"the key file says rows from {binding.keyed_from} on are keyed, but there is no row "
            f"{binding.keyed_from}: the keyed rows were deleted (or the table emptied)"
        )
    if row.event != KEYED_EVENT or hash_of(row, binding) != row.hash:
        return f"row {binding.keyed_from}, where the key file says the keyed chain starts, is not its keyed start"
    return None
