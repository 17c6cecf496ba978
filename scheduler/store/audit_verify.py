"""`audit verify`: read every page the audit trail relies on and walk the chain from its first row.

On SQLite the whole database file is checked first (`PRAGMA integrity_check`): a damaged page
elsewhere can hide rows or return others, and reading only the audit table would not notice.
Then every row is read and its hash recomputed (HMAC with the audit key from the keyed start on,
see `scheduler.store.audit_chain`), the ids and links are checked, and the recorded head is
compared with the last row. Heads copied from the daemon's log (`audit head id=... hash=...`)
must still be in the chain: that catches what no check inside the database can, a tail cut off
together with its head, or the whole table replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.exc import DatabaseError

from scheduler.store import audit_chain as chain
from scheduler.store.audit_key import AuditKey, Binding, attached
from scheduler.store.migrations import stored_installation_id
from scheduler.store.schema import audit

_DAMAGE_SHOWN = 5  # lines of SQLite's integrity report quoted


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    rows: int
    bad_id: int | None = None
    reason: str = ""
    keyed_from: int | None = None  # the keyed (HMAC) guarantee holds from this row on (None: unkeyed)
    key_id: str | None = None
    key_file: str | None = None
    head_id: int | None = None  # the last row verified, and its hash (what `--head` takes)
    head_hash: str | None = None
    heads_checked: tuple[str, ...] = ()  # external heads found in the chain, as ID:HASH
    integrity: str | None = None  # "ok" or "damaged" after SQLite's integrity check; None on PostgreSQL

    @property
    def guarantee(self) -> str:
        return "keyed" if self.keyed_from is not None else "unkeyed"


def verify(conn: Connection, heads: Iterable[tuple[int, str]] = ()) -> VerifyResult:
    """Check the chain read through `conn` (with the key attached to its store, if any), and that
    it still holds each of `heads` (id, hash)."""
    walk = _Walk(attached(conn), list(heads))
    if conn.dialect.name == "sqlite":
        damage = _sqlite_damage(conn)
        if damage:
            shown = "; ".join(damage[:_DAMAGE_SHOWN]) + ("; ..." if len(damage) > _DAMAGE_SHOWN else "")
            return VerifyResult(False, 0, reason=f"the state database file is damaged: {shown}", integrity="damaged")
        walk.integrity = "ok"
    try:
        return walk.run(conn)
    except DatabaseError as exc:
        where = f"after row {walk.expected_id - 1}" if walk.expected_id > 1 else "from the first row"
        return walk.fail(walk.expected_id, f"the audit rows cannot be read {where}: {exc.orig}")


def _sqlite_damage(conn: Connection) -> list[str]:
    """SQLite's findings about the whole file (every page, every index), or [] when it is sound."""
    try:
        found = [str(line) for line in conn.exec_driver_sql("PRAGMA integrity_check(20)").scalars()]
    except DatabaseError as exc:
        return [str(exc.orig)]
    return [] if found == ["ok"] else found


class _Walk:
    def __init__(self, key: AuditKey | None, heads: list[tuple[int, str]]) -> None:
        self.key = key
        self.heads = heads
        self.binding: Binding | None = None
        self.expected_id, self.prev_hash = 1, chain.GENESIS
        self.integrity: str | None = None
        self.confirmed: list[str] = []

    def fail(self, bad_id: int | None, reason: str) -> VerifyResult:
        return self._result(False, bad_id, reason)

    def _result(self, ok: bool, bad_id: int | None = None, reason: str = "") -> VerifyResult:
        last_id = self.expected_id - 1
        keyed = self.binding is not None and last_id >= self.binding.keyed_from
        return VerifyResult(
            ok, last_id, bad_id, reason,
            keyed_from=self.binding.keyed_from if keyed and self.binding else None,
            key_id=self.binding.key_id if self.binding else None,
            key_file=str(self.key.path) if self.key else None,
            head_id=last_id, head_hash=self.prev_hash if last_id else None,
            heads_checked=tuple(self.confirmed), integrity=self.integrity,
        )  # fmt: skip

    def run(self, conn: Connection) -> VerifyResult:
        problem = self._settle_key(conn)
        if problem:
            return self.fail(None, problem)
        wanted = {head_id for head_id, _ in self.heads}
        seen: dict[int, str] = {}
        incidents: list[tuple[int, Any]] = []
        for row in _iter_rows(conn):
            problem = self._row_problem(row)
            if problem:
                return self.fail(row.id, problem)
            if row.event == chain.HEAD_INVALID_EVENT:
                incidents.append((row.id, _details(row).get("continued_from")))
            if row.id in wanted:
                seen[row.id] = row.hash
            self.prev_hash, self.expected_id = row.hash, self.expected_id + 1
        last_id = self.expected_id - 1
        binding = self.binding
        if binding is not None and last_id < binding.keyed_from:
            return self.fail(
                binding.keyed_from,
                f"the key file says rows from {binding.keyed_from} on are keyed, but the chain ends at row "
                f"{last_id}: the keyed rows were deleted (or the table emptied)",
            )
        for head_id, head_hash in self.heads:
            if head_id > last_id:
                return self.fail(
                    head_id,
                    f"the external head {head_id}:{head_hash} is past the end of the chain (row {last_id}): "
                    "rows were deleted from the end (or the table emptied)",
                )
            if seen.get(head_id) != head_hash:
                return self.fail(
                    head_id, f"row {head_id} is not the external head's row (its hash differs): the chain was rewritten"
                )
            self.confirmed.append(f"{head_id}:{head_hash}")
        confirmed = {head_id for head_id, _ in self.heads}
        for row_id, continued_from in incidents:
            if continued_from not in confirmed:
                return self.fail(
                    row_id,
                    f"at row {row_id} a writer found the recorded head invalid and continued from row "
                    f"{continued_from}: rows deleted from the end before then cannot be ruled out; check with the "
                    f"last `audit head` the log shows before then (--head {continued_from}:HASH)",
                )
        recorded = chain.recorded_head(conn)
        problem = chain.head_problem(recorded, last_id, self.prev_hash, binding)
        if problem and last_id not in confirmed:
            head = chain.parse_head(recorded) if recorded is not None else None
            return self.fail(head.id if head else None, problem)
        return self._result(True)

    def _settle_key(self, conn: Connection) -> str | None:
        """Which key the chain must be keyed with (None without a key file), or what is wrong."""
        if self.key is None:
            return None
        this = stored_installation_id(conn)
        self.key.settle_path(this)
        binding = self.key.read()
        if binding is None:  # a key whose first row committed while its writer died
            binding = self.key.recover_pending(lambda b: chain.start_problem(conn, b) is None, promote=False)
        if binding is None:
            return None
        if binding.installation_id != this:
            return (
                f"the audit key file {self.key.path} belongs to another state database (installation "
                f"{binding.installation_id}, this one is {this}): the database was replaced, "
                "or the key file is the wrong one"
            )
        self.binding = binding
        return None

    def _row_problem(self, row: Any) -> str | None:
        if row.id != self.expected_id:
            if row.id > self.expected_id:
                return f"rows {self.expected_id}..{row.id - 1} are missing"
            return "row id out of sequence"
        if row.prev_hash != self.prev_hash:
            return "does not chain to the previous row (a row was deleted or inserted)"
        binding = self.binding
        if row.event == chain.KEYED_EVENT:
            if binding is None:
                where = f"at {self.key.path}" if self.key else "given"
                return (
                    f"the chain is keyed (HMAC) from this row on, but there is no audit key file {where} to check "
                    "it with: run audit verify with the daemon's key file (ZENML_SCHEDULER_AUDIT_KEY_FILE)"
                )
            if row.id != binding.keyed_from:
                return (
                    f"starts a keyed chain with another key than the key file's, which starts at row "
                    f"{binding.keyed_from} (the key was replaced)"
                )
        elif binding is not None and row.id == binding.keyed_from:
            return "the key file says the keyed chain starts here, but this row is not its keyed start"
        keyed = binding is not None and row.id >= binding.keyed_from
        if chain.hash_of(row, binding if keyed else None) != row.hash:
            if keyed:
                return "content does not match its HMAC (the row was edited, or written without the audit key)"
            return "content does not match its hash (the row was edited)"
        return None


def _details(row: Any) -> dict[str, Any]:
    try:
        details = json.loads(row.details)
    except ValueError:
        return {}
    return details if isinstance(details, dict) else {}


def _iter_rows(conn: Connection, chunk: int = 5000) -> Iterator[Any]:
    last = 0
    while True:
        batch = conn.execute(select(audit).where(audit.c.id > last).order_by(audit.c.id).limit(chunk)).all()
        if not batch:
            return
        yield from batch
        last = batch[-1].id
